"""The project-local Dagster instance: sqlite storage under DAGSTER_HOME, telemetry off, and runs
launched by the daemon one at a time (each run starts its own Ray and models: two at once on 2 cores
only thrash)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pinlanding_assets.partitions import catalog_drops
from pinlanding_assets.settings import export_default, setting

DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 1
"""


def ensure_dagster_home() -> Path:
    """Use DAGSTER_HOME if set, else ``.dagster_home`` in the project; write its dagster.yaml once."""
    home = Path(export_default("DAGSTER_HOME", setting("DAGSTER_HOME"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def register_drops(instance: dg.DagsterInstance, drops: list[str]) -> list[str]:
    """Add the drops the instance does not know yet; partitions must exist before a partitioned run."""
    known = set(instance.get_dynamic_partitions(catalog_drops.name))
    new = [drop for drop in drops if drop not in known]
    if new:
        instance.add_dynamic_partitions(catalog_drops.name, new)
    return new
