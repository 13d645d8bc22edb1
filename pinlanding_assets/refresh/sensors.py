"""Sensors do only what Declarative Automation cannot: register new dynamic partitions (catalog drops,
model releases) and report changes to files outside Dagster (the search log's week files). Every
materialization that follows is requested by the automation condition sensor."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg

from pinlanding_assets.catalog.drops import ready_drops, refused_drops
from pinlanding_assets.partitions import catalog_drops, log_weeks, model_releases, next_release_key, week_key
from pinlanding_assets.refresh.keys import MERCHANDISING_OVERRIDES, SEARCH_LOG
from pinlanding_assets.refresh.releases import latest_record, release_due
from pinlanding_assets.settings import ProjectSettings


def new_drops(ready: list[str], registered: set[str], requested: set[str]) -> list[str]:
    """Ready drops neither registered in the instance nor requested before, in name order."""
    return [drop for drop in ready if drop not in registered and drop not in requested]


@dg.sensor(
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers each ready drop (its _READY marker exists) as a catalog_drops partition; "
                "automation then materializes it.",
)
def catalog_drop_sensor(context: dg.SensorEvaluationContext, project: ProjectSettings) -> dg.SensorResult:
    landing = project.paths.landing_dir
    cursor = json.loads(context.cursor) if context.cursor else {}
    if isinstance(cursor, list):  # the cursor of earlier versions: the requested drops only
        cursor = {"requested": cursor}
    requested = set(cursor.get("requested", []))
    registered = set(context.instance.get_dynamic_partitions(catalog_drops.name))
    drops = new_drops(ready_drops(landing), registered, requested)
    refused = refused_drops(landing)
    for name in sorted(set(refused) - set(cursor.get("refused", []))):
        context.log.warning(refused[name])
    next_cursor = json.dumps({"requested": sorted(requested | set(drops)), "refused": sorted(refused)})
    if not drops:
        reason = f"no new ready drops in {landing}" + (f"; refused: {'; '.join(refused.values())}" if refused else "")
        return dg.SensorResult(skip_reason=reason, cursor=next_cursor)
    context.log.info(f"registering drops: {', '.join(drops)}")
    return dg.SensorResult(
        dynamic_partitions_requests=[catalog_drops.build_add_request(drops)],
        cursor=next_cursor,
    )


def week_fingerprint(files: list[Path]) -> str:
    """Names, sizes and modification times of a week's files: any change is a new version of the week."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def last_fingerprint(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None) -> str | None:
    """The fingerprint last reported for ``key`` (one partition of it), kept in the instance so the CLI
    and the sensors agree; None when nothing was reported."""
    record = latest_record(instance, key, partition)
    value = record.asset_materialization.metadata.get("fingerprint") if record else None
    return value.value if value is not None else None


def reported_fingerprints(instance: dg.DagsterInstance) -> dict[str, str]:
    """Week -> the fingerprint last reported for it."""
    return {week: last_fingerprint(instance, SEARCH_LOG, week) or ""
            for week in instance.get_materialized_partitions(SEARCH_LOG)}


def changed_weeks(log_dir: Path, weeks: dg.PartitionsDefinition,
                  instance: dg.DagsterInstance) -> tuple[list[dg.AssetMaterialization], list[str]]:
    """(events for weeks whose files changed, weeks past ``weeks``: the code location's week partitions)."""
    known = set(weeks.get_partition_keys())
    reported = reported_fingerprints(instance)
    events, outside = [], []
    for monday, files in sorted(log_weeks(log_dir).items()):
        key = week_key(monday)
        if key not in known:
            outside.append(key)
            continue
        fingerprint = week_fingerprint(files)
        if reported.get(key) != fingerprint:
            events.append(dg.AssetMaterialization(SEARCH_LOG, partition=key, metadata={
                "fingerprint": fingerprint, "files": dg.MetadataValue.json([f.name for f in files]),
                "bytes": sum(f.stat().st_size for f in files)}))
    return events, outside


def search_log_sensor(weeks: dg.PartitionsDefinition) -> dg.SensorDefinition:
    """The sensor over the code location's ``weeks`` (built with the demand assets)."""

    @dg.sensor(
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Reports each week of the search-log folder whose files changed (search_log), so automation "
                    "refreshes that week's intents.",
    )
    def search_log_sensor(context: dg.SensorEvaluationContext, project: ProjectSettings) -> dg.SensorResult | dg.SkipReason:
        log_dir = project.paths.search_log_dir
        events, outside = changed_weeks(log_dir, weeks, context.instance)
        if outside:
            context.log.warning(f"week files past the weeks this code location knows ({', '.join(outside)}): "
                                "reload the code location to add them")
        if not events:
            return dg.SkipReason(f"no changed weeks in {log_dir}")
        return dg.SensorResult(asset_events=events)

    return search_log_sensor


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Cuts a model release (a new model_releases partition) when enough labelled products are new to "
                "the release in service (PINLANDING_RELEASE_NEW_LABEL_SHARE) or it is older than "
                "PINLANDING_RELEASE_MAX_AGE_DAYS; automation then builds it.",
)
def release_sensor(context: dg.SensorEvaluationContext, project: ProjectSettings) -> dg.SensorResult | dg.SkipReason:
    refresh = project.refresh
    decision = release_due(context.instance, refresh.release_new_label_share, refresh.release_max_age_days)
    if not decision.due:
        return dg.SkipReason(decision.reason)
    key = next_release_key(context.instance.get_dynamic_partitions(model_releases.name))
    context.log.info(f"cutting release {key}: {decision.reason}")
    return dg.SensorResult(dynamic_partitions_requests=[model_releases.build_add_request([key])])


def overrides_event(path: Path, instance: dg.DagsterInstance) -> dg.AssetMaterialization | None:
    """An observation of the overrides file when its fingerprint differs from the last one reported."""
    from pinlanding_assets.collections.overrides import fingerprint

    now = fingerprint(path)
    if (last_fingerprint(instance, MERCHANDISING_OVERRIDES) or "absent") == now:
        return None
    return dg.AssetMaterialization(MERCHANDISING_OVERRIDES,
                                   metadata={"fingerprint": now, "path": dg.MetadataValue.path(str(path))})


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports the merchandising overrides file (merchandising_overrides) when it changes, so "
                "automation publishes the release in service again with it.",
)
def overrides_sensor(context: dg.SensorEvaluationContext, project: ProjectSettings) -> dg.SensorResult | dg.SkipReason:
    path = project.paths.overrides_file
    event = overrides_event(path, context.instance)
    if event is None:
        return dg.SkipReason(f"{path} unchanged")
    return dg.SensorResult(asset_events=[event])
