"""The resources of this code location, built from the settings: the one place settings meet resources."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pinlanding_assets.settings import Settings, load_settings
from resources import Deployment, build_resources
from resources.model_backends import ModelBackends


def model_backends(settings: Settings) -> ModelBackends:
    return ModelBackends(model_cache_dir=str(settings.paths.model_cache_dir), **asdict(settings.models))


def resources_for(settings: Settings | None = None) -> dict[str, Any]:
    """Ray pool, Spark session, warehouse IO manager, model backends, the checks' quality gates, and the
    settings themselves (``project``: paths and the defaults of run config)."""
    settings = settings or load_settings()
    deployment = Deployment(settings.deployment, settings.paths.warehouse_dir, settings.ray_cpus,
                            settings.ray_address, settings.spark_master)
    return {**build_resources(deployment, model_backends(settings)), "quality_gates": settings.gates, "project": settings}
