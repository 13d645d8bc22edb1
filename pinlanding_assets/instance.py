"""The project's Dagster instance under DAGSTER_HOME, configured by the checked-in ``dagster.yaml``
(telemetry off, two run lanes, run monitoring and retries). Storage is sqlite in DAGSTER_HOME unless
PINLANDING_POSTGRES_URL names a PostgreSQL database: the production setting, where runs, events and
schedules survive the machine and the daemon, webserver and run workers share one database."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from pinlanding_assets.partitions import catalog_drops
from pinlanding_assets.settings import PROJECT_ROOT, export_library_environment, load_settings

PROJECT_DAGSTER_YAML = PROJECT_ROOT / "dagster.yaml"


QUEUE_LIMITS = ("max_concurrent_runs", "tag_concurrency_limits")
# Read by Dagster from the environment when the instance loads, so the password stays out of the file.
POSTGRES_STORAGE = {"postgres": {"postgres_url": {"env": "PINLANDING_POSTGRES_URL"}}}


def migrated_run_queue(config: dict) -> dict:
    """Run-queue limits set under ``run_coordinator`` (what this project wrote before) moved to
    ``concurrency: runs``, where Dagster reads them now: the two together are an invalid instance config.
    A run coordinator left with no other setting is dropped (the default coordinator queues runs)."""
    coordinator = config.get("run_coordinator")
    if not isinstance(coordinator, dict) or coordinator.get("class") != "QueuedRunCoordinator":
        return config
    options = dict(coordinator.get("config") or {})
    moved = {key: options.pop(key) for key in QUEUE_LIMITS if key in options}
    if not moved:
        return config
    migrated = {key: value for key, value in config.items() if key != "run_coordinator"}
    if options:
        migrated["run_coordinator"] = {**coordinator, "config": options}
    runs = dict((migrated.get("concurrency") or {}).get("runs") or {})
    migrated["concurrency"] = {**(migrated.get("concurrency") or {}), "runs": {**moved, **runs}}
    return migrated


def merged_instance_config(project: dict, existing: dict) -> dict:
    """``existing`` (its run-queue limits migrated) with every project key it lacks added (nested
    mappings merged; values already set are kept)."""
    merged = dict(migrated_run_queue(existing))
    for key, value in project.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merged_instance_config(value, merged[key])
        elif key not in merged:
            merged[key] = value
    return merged


def ensure_dagster_home() -> Path:
    """The settings' DAGSTER_HOME (``.dagster_home`` in the project by default), with the project's
    ``dagster.yaml`` copied in, or merged into the one there; exported for Dagster and child processes."""
    home = load_settings().dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    project = yaml.safe_load(PROJECT_DAGSTER_YAML.read_text()) or {}
    if load_settings().postgres_url:
        project["storage"] = POSTGRES_STORAGE
    existing = (yaml.safe_load(config.read_text()) or {}) if config.is_file() else {}
    merged = merged_instance_config(project, existing)
    if merged != existing or not config.is_file():
        config.write_text(yaml.safe_dump(merged, sort_keys=False))
    export_library_environment(home)
    return home


def register_drops(instance: dg.DagsterInstance, drops: list[str]) -> list[str]:
    """Add the drops the instance does not know yet; partitions must exist before a partitioned run."""
    known = set(instance.get_dynamic_partitions(catalog_drops.name))
    new = [drop for drop in drops if drop not in known]
    if new:
        instance.add_dynamic_partitions(catalog_drops.name, new)
    return new
