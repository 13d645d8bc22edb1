"""Sensors and release rules on a real Dagster instance (materializations reported as events)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from pinlanding_assets.catalog.drops import READY_MARKER, split_fashion_catalog
from pinlanding_assets.partitions import catalog_drops
from pinlanding_assets.refresh.sensors import catalog_drop_sensor
from pinlanding_assets.settings import load_settings


def _apply(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """build_sensor_context does not apply partition requests: do what the daemon would."""
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def test_sensor_registers_new_ready_drops_once(project_dirs: Path, fashion_dir: Path) -> None:
    landing = project_dirs / "landing"
    split_fashion_catalog(fashion_dir, landing, n_drops=3)
    (landing / "drop-003" / READY_MARKER).unlink()  # still being written
    project = {"project": load_settings({"PINLANDING_LANDING_DIR": str(landing)})}
    with dg.instance_for_test() as instance:
        result = catalog_drop_sensor(dg.build_sensor_context(instance=instance, resources=project))
        assert isinstance(result, dg.SensorResult) and not result.run_requests, "automation runs the drop"
        assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["drop-001", "drop-002"]]
        assert json.loads(result.cursor) == {"requested": ["drop-001", "drop-002"], "refused": []}
        _apply(instance, result)
        assert instance.get_dynamic_partitions(catalog_drops.name) == ["drop-001", "drop-002"]
        again = catalog_drop_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor, resources=project))
        assert again.skip_reason
        (landing / "drop-003" / READY_MARKER).write_text("ready\n")
        third = catalog_drop_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor, resources=project))
        _apply(instance, third)
        assert instance.get_dynamic_partitions(catalog_drops.name) == ["drop-001", "drop-002", "drop-003"]
