"""Asset storage: every table is Parquet under the warehouse directory, one file per partition."""

from __future__ import annotations

from pathlib import Path

from dagster import InputContext
from dagster_polars import PolarsParquetIOManager


class WarehouseIOManager(PolarsParquetIOManager):
    """dagster-polars' Parquet IO manager, with one change: an unpartitioned asset that reads a
    partitioned one always gets ``{partition: frame}``. Dagster unwraps the value when exactly one
    partition exists, which would hand a one-drop catalog a different type than a four-drop one."""

    def load_partitions(self, context: InputContext):
        loaded = super().load_partitions(context)
        keys = context.asset_partition_keys
        if len(keys) == 1 and not context.has_partition_key and not isinstance(loaded, dict):
            return {keys[0]: loaded}
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
