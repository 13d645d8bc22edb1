"""Files written whole, and the warehouse IO manager built on them: a table is replaced whole or not
at all; one run may write several partitions."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from resources.files import written_whole
from resources.storage import StagedParquet, parquet_io_manager


def test_a_file_or_directory_is_replaced_whole_or_left_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "titles.txt"
    with written_whole(target) as staging:
        staging.write_text("one")
        assert not target.exists() and staging.name.startswith("."), "hidden until the block ends"
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError), written_whole(target) as staging:
        staging.write_text("half")
        raise RuntimeError("the writer failed")
    site = tmp_path / "site"
    with written_whole(site, directory=True) as staging:
        (staging / "index.html").write_text("v1")
    with pytest.raises(RuntimeError), written_whole(site, directory=True) as staging:
        (staging / "index.html").write_text("v2, half")
        raise RuntimeError("the build failed")
    assert (site / "index.html").read_text() == "v1", "a failed build leaves the site in service"
    with written_whole(site, directory=True) as staging:
        (staging / "page.html").write_text("v3")
    assert target.read_text() == "one" and [p.name for p in site.iterdir()] == ["page.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "site"], "no staging or old copy is left"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["titles.txt"]


def test_a_failed_write_leaves_the_previous_table(tmp_path: Path) -> None:
    """polars truncates the file it writes before it fails (an Object column cannot be written): written
    in place, the last good table would become a file that is no Parquet at all."""
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


def test_one_run_writes_several_partitions(tmp_path: Path) -> None:
    """A single-run backfill (a release re-scoring every drop): the asset returns {drop: table or engine
    directory} and each lands in its own partition; a partition the output lacks fails the run."""
    drops = dg.StaticPartitionsDefinition(["d1", "d2", "d3"])
    policy = dg.BackfillPolicy.single_run()

    @dg.asset(partitions_def=drops, backfill_policy=policy)
    def table(context) -> dict[str, pl.DataFrame]:
        return {drop: pl.DataFrame({"drop": [drop]}) for drop in context.partition_keys}

    @dg.asset(partitions_def=drops, backfill_policy=policy)
    def engine_written(context) -> dict[str, StagedParquet]:
        out = {}
        for drop in context.partition_keys:
            out[drop] = StagedParquet(tmp_path / "staging" / drop)
            out[drop].path.mkdir(parents=True)
            pl.DataFrame({"drop": [drop]}).write_parquet(out[drop].path / "part-0.parquet")
        return out

    @dg.asset(partitions_def=drops, backfill_policy=policy)
    def short(context) -> dict[str, pl.DataFrame]:
        return {context.partition_keys[0]: pl.DataFrame({"drop": ["x"]})}

    warehouse = tmp_path / "warehouse"
    span = {"dagster/asset_partition_range_start": "d1", "dagster/asset_partition_range_end": "d3"}
    resources = {"io_manager": parquet_io_manager(warehouse)}
    assert dg.materialize([table, engine_written], tags=span, resources=resources).success
    for drop in ("d1", "d2", "d3"):
        assert pl.read_parquet(warehouse / "table" / f"{drop}.parquet")["drop"].to_list() == [drop]
        assert pl.read_parquet(warehouse / "engine_written" / f"{drop}.parquet")["drop"].to_list() == [drop]
    failed = dg.materialize([short], tags=span, resources=resources, raise_on_error=False)
    assert not failed.success and not (warehouse / "short").exists()
