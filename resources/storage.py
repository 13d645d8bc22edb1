"""Asset storage: every table is Parquet under the warehouse directory, one file per partition."""

from __future__ import annotations

from pathlib import Path

from dagster import InputContext
from dagster_polars import PolarsParquetIOManager


PARTITION_DICT = "partition_dict"


class WarehouseIOManager(PolarsParquetIOManager):
    """dagster-polars' Parquet IO manager, with one change: an input marked ``partition_dict`` (every
    drop, every release) always gets ``{partition: frame}``, empty when none exists yet. Dagster
    unwraps the value when exactly one partition exists (and gives None for none), which would hand
    a one-drop catalog a different type than a four-drop one."""

    def load_input(self, context: InputContext):
        if not context.definition_metadata.get(PARTITION_DICT):
            return super().load_input(context)
        keys = context.asset_partition_keys if context.has_asset_partitions else []
        if not keys:
            return {}
        loaded = super().load_input(context)
        if not isinstance(loaded, dict):
            return {keys[0]: loaded} if loaded is not None else {}
        return loaded


def parquet_io_manager(warehouse_dir: Path) -> WarehouseIOManager:
    return WarehouseIOManager(base_dir=str(warehouse_dir))


def replace_directory(staging: Path, target: Path) -> None:
    """Swap a fully written ``staging`` directory in for ``target``: readers see the old or the new
    directory, never a half-written one (two renames; the old copy is removed afterwards)."""
    import shutil

    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
