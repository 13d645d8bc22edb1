"""Dagster resources, chosen per deployment in one place.

``local`` (default): a local Ray, ``local[2,4]`` Spark (2 threads, failed tasks retried), Parquet files under the project's data dir.
``cluster``: joins the Ray cluster at ``RAY_ADDRESS`` and the Spark master at ``PINLANDING_SPARK_MASTER``.
The deployment is ``PINLANDING_DEPLOYMENT`` if set, else ``cluster`` when either address is set.
"""

from __future__ import annotations

from typing import Any

from pinlanding_assets.settings import get_paths, setting, setting_int
from resources.model_backends import ModelBackends
from resources.ray_pool import RayPool
from resources.spark import LOCAL_MASTER, spark_session_resource
from resources.storage import parquet_io_manager

DEPLOYMENTS = ("local", "cluster")


def current_deployment() -> str:
    chosen = setting("PINLANDING_DEPLOYMENT")
    if chosen:
        if chosen not in DEPLOYMENTS:
            raise ValueError(f"PINLANDING_DEPLOYMENT={chosen!r}: expected one of {DEPLOYMENTS}")
        return chosen
    return "cluster" if setting("RAY_ADDRESS") or setting("PINLANDING_SPARK_MASTER") else "local"


def build_resources(deployment: str | None = None) -> dict[str, Any]:
    deployment = deployment or current_deployment()
    paths = get_paths()
    if deployment == "local":
        ray_pool = RayPool(
            ray_init_options={
                "num_cpus": setting_int("PINLANDING_RAY_CPUS"),
                "include_dashboard": False,
                "ignore_reinit_error": True,
            }
        )
        spark_master = LOCAL_MASTER
    elif deployment == "cluster":
        # A set RAY_ADDRESS makes ray.init refuse num_cpus: pass the address and nothing that sizes the cluster.
        ray_pool = RayPool(address=setting("RAY_ADDRESS") or "auto", ray_init_options={"ignore_reinit_error": True})
        spark_master = setting("PINLANDING_SPARK_MASTER") or LOCAL_MASTER
    else:
        raise ValueError(f"unknown deployment {deployment!r}: expected one of {DEPLOYMENTS}")
    return {
        "ray_pool": ray_pool,
        "pyspark": spark_session_resource(spark_master),
        "io_manager": parquet_io_manager(paths.warehouse_dir),
        "models": ModelBackends(),
    }
