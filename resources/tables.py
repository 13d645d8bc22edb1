"""Generic table helpers the resources and the domains share: Arrow tables as Ray datasets and
back, engine-written Parquet parts, Arrow that Spark accepts."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa


def arrow_dataset(table: pa.Table, batch_size: int, max_blocks: int = 64):
    """A Ray dataset over ``table`` in up to ``max_blocks`` blocks (one block would leave every stage
    with a single task), sliced here rather than repartitioned by Ray: no shuffle stage to wait for."""
    import ray

    blocks = max(1, min(table.num_rows // max(batch_size, 1), max_blocks))
    rows = -(-table.num_rows // blocks) if table.num_rows else 0
    return ray.data.from_arrow([table.slice(i * rows, rows) for i in range(blocks)] if rows else [table])


def write_parquet_parts(dataset, staging: Path, schema: pa.Schema, rows_per_file: int = 8192) -> int:
    """Run ``dataset`` and write it as ``staging/part-NNNNNN.parquet`` (the engine writes, nothing
    passes through this process); returns the rows written. Row order is not kept (Ray hands blocks
    on as they finish): a partition is a set of rows and readers that need an order sort. ``staging`` is replaced; an
    empty result still gets one file with the schema."""
    import pyarrow.parquet as pq
    from ray.data import SaveMode
    from ray.data.datasource import FilenameProvider

    class TaskParts(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-{task_index:06d}.parquet"

    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    dataset.write_parquet(str(staging), filename_provider=TaskParts(), min_rows_per_file=rows_per_file,
                          mode=SaveMode.OVERWRITE)
    files = sorted(staging.glob("*.parquet"))
    if not files:
        staging.mkdir(parents=True, exist_ok=True)
        pq.write_table(schema.empty_table(), staging / "part-000000.parquet")
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def collect_sorted(dataset, schema: pa.Schema, key: str, on_rows: Callable[[int], None] | None = None) -> pa.Table:
    """Run the dataset and return one table in ``schema``, sorted by ``key`` whatever order blocks
    finished in; ``on_rows`` hears the row count of each block as it arrives (progress)."""
    tables = []
    for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
        tables.append(table.cast(schema))
        if on_rows:
            on_rows(table.num_rows)
    return pa.concat_tables(tables).sort_by(key) if tables else schema.empty_table()


def spark_table(frame: pl.DataFrame) -> pa.Table:
    """Arrow that Spark accepts: plain strings and signed integers (polars emits large strings, u32)."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    fields = []
    for field in table.schema:
        kind = field.type
        if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
            kind = pa.string()
        elif pa.types.is_unsigned_integer(kind):
            kind = pa.int64()
        elif pa.types.is_large_list(kind):
            kind = pa.list_(pa.string())
        fields.append(pa.field(field.name, kind))
    return table.cast(pa.schema(fields))
