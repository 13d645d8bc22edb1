"""Sensors: the catalog drop sensor registers each newly ready drop as a partition and requests its
intake run; the refresh sensor carries a finished stage on to the next, so a new drop ends in
refreshed collections and landing pages without anyone running `pinlanding run`."""

from __future__ import annotations

import json

import dagster as dg

from pinlanding_assets.catalog.drops import ready_drops
from pinlanding_assets.jobs import CATALOG_DROP_JOB, CROSS_DROP_JOB, DROP_SCORING_JOB, PUBLISH_JOB
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


NEXT_STAGE = {CATALOG_DROP_JOB: CROSS_DROP_JOB, CROSS_DROP_JOB: DROP_SCORING_JOB, DROP_SCORING_JOB: PUBLISH_JOB}
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]
INTAKE_ASSET = dg.AssetKey("raw_vlm_attributes")
MODEL_ASSET = dg.AssetKey("dual_encoder")
SCORED_ASSET = dg.AssetKey("attribute_assignments")


def stale_drops(instance: dg.DagsterInstance, drops: list[str]) -> list[str]:
    """Drops whose assignments are older than the current dual encoder (their scoring failed or never
    ran): publishing then would mix two models' assignments."""
    model = instance.get_latest_materialization_event(MODEL_ASSET)
    if model is None:
        return drops
    stale = []
    for drop in drops:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=SCORED_ASSET, asset_partitions=[drop]), limit=1).records
        if not records or records[0].timestamp < model.timestamp:
            stale.append(drop)
    return stale


def refresh_requests(finished_job: str, run_id: str, in_flight: int, drops: list[str]) -> list[dg.RunRequest]:
    """The next stage after a successful run of ``finished_job``, once no other run of that job is
    still going (the last of a batch hands on): cross-drop once, scoring once per drop, publish once."""
    following = NEXT_STAGE.get(finished_job)
    if following is None or in_flight:
        return []
    if following == DROP_SCORING_JOB:
        return [dg.RunRequest(job_name=following, partition_key=drop, run_key=f"{following}:{drop}:after:{run_id}")
                for drop in drops]
    return [dg.RunRequest(job_name=following, run_key=f"{following}:after:{run_id}")]


def refresh_sensor(jobs: list) -> dg.RunStatusSensorDefinition:
    """Built from the job definitions so the sensor can both watch and request them."""
    by_name = {job.name: job for job in jobs}

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[by_name[name] for name in NEXT_STAGE],
        request_jobs=[by_name[name] for name in NEXT_STAGE.values()],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="After intake -> cross-drop assets; after those -> scoring of every drop; after scoring -> publish.",
    )
    def pipeline_refresh_sensor(context: dg.RunStatusSensorContext):
        finished = context.dagster_run.job_name
        in_flight = context.instance.get_runs_count(dg.RunsFilter(job_name=finished, statuses=IN_FLIGHT))
        if in_flight:
            return dg.SkipReason(f"{finished}: {in_flight} run(s) of it still in flight")
        drops = sorted(context.instance.get_dynamic_partitions(catalog_drops.name))
        following = NEXT_STAGE.get(finished)
        if following == CROSS_DROP_JOB:
            done = context.instance.get_materialized_partitions(INTAKE_ASSET)
            missing = [drop for drop in drops if drop not in done]
            if missing:
                return dg.SkipReason(f"cross-drop assets wait for the intake of {', '.join(missing)}")
        if following == PUBLISH_JOB:
            stale = stale_drops(context.instance, drops)
            if stale:
                return dg.SkipReason(f"publishing waits for scoring with the current model: {', '.join(stale)}")
        return refresh_requests(finished, context.dagster_run.run_id, 0, drops) or dg.SkipReason(
            f"nothing follows {finished}")

    return pipeline_refresh_sensor

