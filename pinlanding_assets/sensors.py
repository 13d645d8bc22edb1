"""The catalog drop sensor: registers each newly ready drop as a partition and requests its run."""

from __future__ import annotations

import json

import dagster as dg

from pinlanding_assets.catalog.drops import ready_drops
from pinlanding_assets.jobs import CATALOG_DROP_JOB
from pinlanding_assets.partitions import catalog_drops
from pinlanding_assets.settings import get_paths


def new_drops(ready: list[str], registered: set[str], requested: set[str]) -> list[str]:
    """Ready drops neither registered in the instance nor requested before, in name order."""
    return [drop for drop in ready if drop not in registered and drop not in requested]


@dg.sensor(
    job_name=CATALOG_DROP_JOB,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the landing directory; a drop counts only once its _READY marker exists.",
)
def catalog_drop_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    landing = get_paths().landing_dir
    requested = set(json.loads(context.cursor)) if context.cursor else set()
    registered = set(context.instance.get_dynamic_partitions(catalog_drops.name))
    drops = new_drops(ready_drops(landing), registered, requested)
    if not drops:
        return dg.SkipReason(f"no new ready drops in {landing}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=drop, run_key=f"catalog-drop:{drop}") for drop in drops],
        dynamic_partitions_requests=[catalog_drops.build_add_request(drops)],
        cursor=json.dumps(sorted(requested | set(drops))),
    )
