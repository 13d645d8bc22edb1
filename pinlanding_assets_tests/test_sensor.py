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


def test_refresh_hands_each_stage_on_once_the_batch_is_done() -> None:
    from pinlanding_assets.jobs import CROSS_DROP_JOB, DROP_SCORING_JOB, PUBLISH_JOB
    from pinlanding_assets.sensors import refresh_requests

    assert refresh_requests(CATALOG_DROP_JOB, "r1", in_flight=1, drops=["drop-001", "drop-002"]) == []
    [cross] = refresh_requests(CATALOG_DROP_JOB, "r2", in_flight=0, drops=["drop-001", "drop-002"])
    assert cross.job_name == CROSS_DROP_JOB and cross.run_key == f"{CROSS_DROP_JOB}:after:r2"
    scoring = refresh_requests(CROSS_DROP_JOB, "r3", in_flight=0, drops=["drop-001", "drop-002"])
    assert [(r.job_name, r.partition_key) for r in scoring] == [(DROP_SCORING_JOB, "drop-001"),
                                                                (DROP_SCORING_JOB, "drop-002")]
    assert [r.job_name for r in refresh_requests(DROP_SCORING_JOB, "r4", 0, ["drop-001"])] == [PUBLISH_JOB]
    assert refresh_requests(PUBLISH_JOB, "r5", 0, ["drop-001"]) == []


def test_refresh_sensor_on_real_runs() -> None:
    """Runs named like the pipeline's jobs finish in a real instance; the sensor decides what follows."""
    from pinlanding_assets.definitions import all_jobs
    from pinlanding_assets.jobs import CROSS_DROP_JOB, DROP_SCORING_JOB, PUBLISH_JOB
    from pinlanding_assets.sensors import INTAKE_ASSET, MODEL_ASSET, SCORED_ASSET, refresh_sensor

    sensor = refresh_sensor(all_jobs)

    @dg.op
    def step() -> None:
        pass

    def finished_run(instance: dg.DagsterInstance, name: str):
        result = dg.GraphDefinition(name=name, node_defs=[step]).to_job().execute_in_process(instance=instance)
        return result.dagster_run, result.get_run_success_event()

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(catalog_drops.name, ["drop-001", "drop-002"])
        run, event = finished_run(instance, CATALOG_DROP_JOB)
        context = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=instance,
                                                     dagster_run=run, dagster_event=event)
        waiting = sensor(context)
        assert isinstance(waiting, dg.SkipReason) and "drop-001, drop-002" in waiting.skip_message
        for drop in ("drop-001", "drop-002"):
            instance.report_runless_asset_event(dg.AssetMaterialization(INTAKE_ASSET, partition=drop))
        [cross] = sensor(dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=instance,
                                                            dagster_run=run, dagster_event=event))
        assert cross.job_name == CROSS_DROP_JOB
        run, event = finished_run(instance, CROSS_DROP_JOB)
        scoring = sensor(dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=instance,
                                                            dagster_run=run, dagster_event=event))
        assert [(r.job_name, r.partition_key) for r in scoring] == [(DROP_SCORING_JOB, "drop-001"),
                                                                    (DROP_SCORING_JOB, "drop-002")]
        # the scoring of drop-001 failed: no publishing with assignments of the previous model
        instance.report_runless_asset_event(dg.AssetMaterialization(SCORED_ASSET, partition="drop-001"))
        instance.report_runless_asset_event(dg.AssetMaterialization(MODEL_ASSET))
        instance.report_runless_asset_event(dg.AssetMaterialization(SCORED_ASSET, partition="drop-002"))
        run, event = finished_run(instance, DROP_SCORING_JOB)
        waiting = sensor(dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=instance,
                                                            dagster_run=run, dagster_event=event))
        assert isinstance(waiting, dg.SkipReason) and waiting.skip_message.endswith("current model: drop-001")
        instance.report_runless_asset_event(dg.AssetMaterialization(SCORED_ASSET, partition="drop-001"))
        [publish] = sensor(dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=instance,
                                                              dagster_run=run, dagster_event=event))
        assert publish.job_name == PUBLISH_JOB
