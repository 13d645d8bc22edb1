"""Dagster resources, chosen per deployment in one place.

``local`` (default): a local Ray, ``local[2,4]`` Spark (2 threads, failed tasks retried), Parquet files
under the warehouse directory. ``cluster``: joins the Ray cluster at ``ray_address`` and the Spark
master at ``spark_master``. The values come from the code location's settings; nothing here reads
the environment or imports the code location.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resources.model_backends import ModelBackends
from resources.ray_pool import RayPool
from resources.spark import LOCAL_MASTER, spark_session_resource
from resources.storage import parquet_io_manager

DEPLOYMENTS = ("local", "cluster")


@dataclass(frozen=True)
class Deployment:
    name: str  # one of DEPLOYMENTS
    warehouse_dir: Path
    ray_cpus: int
    ray_address: str | None = None
    spark_master: str | None = None


def build_resources(deployment: Deployment, models: ModelBackends) -> dict[str, Any]:
    if deployment.name == "local":
        ray_pool = RayPool(
            ray_init_options={"num_cpus": deployment.ray_cpus, "include_dashboard": False, "ignore_reinit_error": True}
        )
        spark_master = LOCAL_MASTER
    elif deployment.name == "cluster":
        # A set RAY_ADDRESS makes ray.init refuse num_cpus: pass the address and nothing that sizes the cluster.
        ray_pool = RayPool(address=deployment.ray_address or "auto", ray_init_options={"ignore_reinit_error": True})
        spark_master = deployment.spark_master or LOCAL_MASTER
    else:
        raise ValueError(f"unknown deployment {deployment.name!r}: expected one of {DEPLOYMENTS}")
    return {
        "ray_pool": ray_pool,
        "pyspark": spark_session_resource(spark_master),
        "io_manager": parquet_io_manager(deployment.warehouse_dir),
        "models": models,
    }
