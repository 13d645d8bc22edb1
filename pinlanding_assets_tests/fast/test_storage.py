"""The warehouse IO manager: a table is replaced whole or not at all."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from resources.storage import parquet_io_manager


def test_a_failed_write_leaves_the_previous_table(tmp_path: Path) -> None:
    """Before, polars truncated the partition's file and then failed (an Object column cannot be written),
    leaving a file that is no Parquet at all where the last good table was."""
    tables = [pl.DataFrame({"product_id": ["a", "b"]}),
              pl.DataFrame({"product_id": [object(), object()]}, schema={"product_id": pl.Object})]

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["drop-001"]))
    def table() -> pl.DataFrame:
        return tables.pop(0)

    resources = {"io_manager": parquet_io_manager(tmp_path)}
    assert dg.materialize([table], partition_key="drop-001", resources=resources).success
    failed = dg.materialize([table], partition_key="drop-001", resources=resources, raise_on_error=False)
    assert not failed.success
    assert [p.name for p in (tmp_path / "table").iterdir()] == ["drop-001.parquet"], "no staged file is left"
    assert pl.read_parquet(tmp_path / "table" / "drop-001.parquet")["product_id"].to_list() == ["a", "b"]
