"""Dagster resources, chosen per deployment in one place.

``local`` (default): a local Ray, ``local[2,4]`` Spark (2 threads, failed tasks retried), Parquet files under the project's data dir.
``cluster``: joins the Ray cluster at ``RAY_ADDRESS`` and the Spark master at ``PINLANDING_SPARK_MASTER``.
The deployment is ``PINLANDING_DEPLOYMENT`` if set, else ``cluster`` when either address is set.
"""

from __future__ import annotations

import os
from typing import Any

from pinlanding_assets.settings import get_paths
from resources.model_backends import ModelBackends
from resources.ray_pool import RayPool
from resources.spark import LOCAL_MASTER, spark_session_resource
from resources.storage import parquet_io_manager

DEPLOYMENTS = ("local", "cluster")


def current_deployment() -> str:
    chosen = os.environ.get("PINLANDING_DEPLOYMENT")
    if chosen:
        if chosen not in DEPLOYMENTS:
            raise ValueError(f"PINLANDING_DEPLOYMENT={chosen!r}: expected one of {DEPLOYMENTS}")
        return chosen
    return "cluster" if os.environ.get("RAY_ADDRESS") or os.environ.get("PINLANDING_SPARK_MASTER") else "local"


def build_resources(deployment: str | None = None) -> dict[str, Any]:
    deployment = deployment or current_deployment()
    paths = get_paths()
    if deployment == "local":
        ray_pool = RayPool(
            ray_init_options={
                "num_cpus": int(os.environ.get("PINLANDING_RAY_CPUS", os.cpu_count() or 2)),
                "include_dashboard": False,
                "ignore_reinit_error": True,
            }
        )
        spark_master = LOCAL_MASTER
    elif deployment == "cluster":
        # A set RAY_ADDRESS makes ray.init refuse num_cpus: pass the address and nothing that sizes the cluster.
        ray_pool = RayPool(address=os.environ.get("RAY_ADDRESS", "auto"), ray_init_options={"ignore_reinit_error": True})
        spark_master = os.environ.get("PINLANDING_SPARK_MASTER", LOCAL_MASTER)
    else:
        raise ValueError(f"unknown deployment {deployment!r}: expected one of {DEPLOYMENTS}")
    return {
        "ray_pool": ray_pool,
        "pyspark": spark_session_resource(spark_master),
        "io_manager": parquet_io_manager(paths.warehouse_dir),
        "models": ModelBackends(),
    }
