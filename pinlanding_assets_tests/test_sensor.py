from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from pinlanding_assets.catalog.drops import READY_MARKER, split_fashion_catalog
from pinlanding_assets.jobs import CATALOG_DROP_JOB
from pinlanding_assets.partitions import catalog_drops
from pinlanding_assets.sensors import catalog_drop_sensor


def _apply(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """build_sensor_context does not apply partition requests: do what the daemon would."""
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def test_sensor_registers_new_ready_drops_once(project_dirs: Path, fashion_dir: Path) -> None:
    landing = project_dirs / "landing"
    split_fashion_catalog(fashion_dir, landing, n_drops=3)
    (landing / "drop-003" / READY_MARKER).unlink()  # still being written
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        result = catalog_drop_sensor(context)
        assert isinstance(result, dg.SensorResult)
        assert [r.partition_key for r in result.run_requests] == ["drop-001", "drop-002"]
        assert {r.job_name for r in result.run_requests} <= {None, CATALOG_DROP_JOB}
        assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["drop-001", "drop-002"]]
        assert json.loads(result.cursor) == ["drop-001", "drop-002"]
        _apply(instance, result)
        assert instance.get_dynamic_partitions(catalog_drops.name) == ["drop-001", "drop-002"]

        again = catalog_drop_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
        assert isinstance(again, dg.SkipReason)

        (landing / "drop-003" / READY_MARKER).write_text("ready\n")
        third = catalog_drop_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
        assert [r.partition_key for r in third.run_requests] == ["drop-003"]
        _apply(instance, third)
        assert instance.get_dynamic_partitions(catalog_drops.name) == ["drop-001", "drop-002", "drop-003"]


def test_sensor_skips_drops_registered_elsewhere(project_dirs: Path, fashion_dir: Path) -> None:
    split_fashion_catalog(fashion_dir, project_dirs / "landing", n_drops=2)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(catalog_drops.name, ["drop-001"])
        result = catalog_drop_sensor(dg.build_sensor_context(instance=instance))
        assert [r.partition_key for r in result.run_requests] == ["drop-002"]
