"""Asset storage: every table is Parquet under the warehouse directory, one file per partition."""

from __future__ import annotations

from pathlib import Path

from dagster_polars import PolarsParquetIOManager


def parquet_io_manager(warehouse_dir: Path) -> PolarsParquetIOManager:
    return PolarsParquetIOManager(base_dir=str(warehouse_dir))
