"""Blocked scoring on a real local Ray: the assignments Ray writes do not depend on the block size,
unusable vectors are quarantined, and a worker killed mid-job leaves the partition complete or untouched."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pinlanding_assets.encoder.assignments import (
    AttributeTable,
    assign,
    assign_block,
    assign_with_ray,
    unscorable_with_ray,
)
from pinlanding_assets.encoder.embeddings import PRODUCT_SCHEMA
from pinlanding_assets.encoder.model import EMBED_DIM
from resources.files import replace_directory
from resources.storage import StagedParquet, parquet_io_manager

FACETS = {"category": 40, "gender": 3, "colour": 30, "material": 20, "pattern": 15}


def _unit(rng: np.random.Generator, rows: int) -> np.ndarray:
    vectors = rng.normal(size=(rows, EMBED_DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _attributes(seed: int = 0) -> AttributeTable:
    rng = np.random.default_rng(seed)
    ids = [f"{facet}:a{i:03d}" for facet, count in FACETS.items() for i in range(count)]
    facets = [i.split(":")[0] for i in ids]
    thresholds = {i: float(rng.uniform(0.1, 0.2)) for i in ids}
    return AttributeTable.build(ids, facets, _unit(rng, len(ids)), thresholds)


def _embeddings(path: Path, products: int, files: int, seed: int = 1) -> list[str]:
    """A product_embeddings partition as the encoder stage writes it: several files."""
    rng = np.random.default_rng(seed)
    ids = [f"p{i:07d}" for i in range(products)]
    vectors = _unit(rng, products)
    path.mkdir(parents=True)
    for part, rows in enumerate(np.array_split(np.arange(products), files)):
        flat = pa.FixedSizeListArray.from_arrays(pa.array(vectors[rows].reshape(-1)), EMBED_DIM)
        table = pa.Table.from_arrays([
            pa.array([ids[i] for i in rows]), flat, flat, flat, pa.array([True] * len(rows)),
            pa.array(["v1"] * len(rows)), pa.array(["r001"] * len(rows))], schema=PRODUCT_SCHEMA)
        pq.write_table(table, path / f"part-{part:06d}.parquet")
    return ids


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def _score(embeddings: Path, staging: Path, block_rows: int) -> pl.DataFrame:
    from ray.data import ActorPoolStrategy

    staged = assign_with_ray(embeddings, _attributes(), "d1", "r001", "v1",
                             {"num_cpus": 0.5, "compute": ActorPoolStrategy(size=1)}, staging, block_rows=block_rows)
    return pl.read_parquet(staged.path)


def test_block_by_block_equals_one_block() -> None:
    rng = np.random.default_rng(3)
    table = _attributes()
    ids = [f"p{i:04d}" for i in range(300)]
    vectors = _unit(rng, 300)
    whole = assign_block("d", ids, vectors, table)
    for size in (1, 7, 64):
        blocks = pl.concat([assign_block("d", ids[s:s + size], vectors[s:s + size], table) for s in range(0, 300, size)])
        assert whole.equals(blocks), f"blocks of {size}"
    scores = (torch.from_numpy(vectors) @ torch.from_numpy(table.vectors).T).numpy()
    shuffled = np.random.default_rng(0).permutation(len(table.ids))
    reference = assign("d", ids, scores[:, shuffled], table.ids[shuffled].tolist(), table.facets[shuffled].tolist(),
                       dict(zip(table.ids.tolist(), table.cuts.tolist())))
    assert whole.equals(reference), "the same assignments whatever the attribute order"
    top1 = whole.filter(pl.col("method") == "top1").group_by("product_id").len()
    assert top1.height == 300 and (top1["len"] == 2).all(), "one category and one gender per product"


def test_ray_scoring_does_not_depend_on_the_block_size(ray_local, tmp_path: Path) -> None:
    ids = _embeddings(tmp_path / "embeddings", 5000, files=3)
    # a partition is a set of rows (Ray writes blocks as they finish): compare in one order
    columns = ["product_id", "facet", "attribute_id"]
    small = _score(tmp_path / "embeddings", tmp_path / "a", block_rows=256).sort(columns)
    large = _score(tmp_path / "embeddings", tmp_path / "b", block_rows=2048).sort(columns)
    assert small.height > 10_000 and small.equals(large)
    assert small["product_id"].unique(maintain_order=True).to_list() == ids, "every product"
    assert set(small["release"]) == {"r001"} and set(small["model_version"]) == {"v1"}


def test_unusable_vectors_are_quarantined_not_scored(ray_local, tmp_path: Path) -> None:
    path = tmp_path / "embeddings"
    ids = _embeddings(path, 400, files=1)
    table = pq.read_table(path / "part-000000.parquet")
    vectors = np.asarray(table.column("embedding").to_pylist(), np.float32)
    vectors[5, 3], vectors[7] = np.nan, 0.0
    table = table.set_column(1, "embedding", pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), EMBED_DIM))
    pq.write_table(table, path / "part-000000.parquet")
    quarantine = unscorable_with_ray(path, "d1", EMBED_DIM, block_rows=64)
    assert quarantine.to_dicts() == [
        {"drop": "d1", "product_id": ids[5], "reason": "embedding has non-finite values"},
        {"drop": "d1", "product_id": ids[7], "reason": "embedding is all zeros"}]
    scored = set(_score(path, tmp_path / "staging", block_rows=128)["product_id"])
    assert scored | set(quarantine["product_id"]) == set(ids) and not scored & set(quarantine["product_id"])


def _actor_pids(title: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if title in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_a_killed_worker_leaves_the_partition_complete_or_untouched(ray_local, tmp_path: Path) -> None:
    embeddings = tmp_path / "embeddings"
    _embeddings(embeddings, 60_000, files=6)
    expected = _score(embeddings, tmp_path / "reference", block_rows=512)
    target = tmp_path / "published"
    target.mkdir()
    (target / "part-000000.parquet").write_bytes(b"")  # the partition as it was before the job
    killed: list[int] = []

    def kill_the_scorer() -> None:
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            pids = _actor_pids("BlockScorer")
            if pids:
                time.sleep(0.5)
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                    except ProcessLookupError:
                        pass
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_scorer)
    killer.start()
    try:
        result = _score(embeddings, tmp_path / "staging", block_rows=512)
        replace_directory(tmp_path / "staging", target)
    except Exception:
        result = None
    killer.join()
    assert killed, "the scoring actor was killed mid-job"
    if result is None:
        assert [f.stat().st_size for f in target.iterdir()] == [0], "a failed job leaves the partition untouched"
    else:
        columns = ["product_id", "facet", "attribute_id"]
        assert result.sort(columns).equals(expected.sort(columns)), "Ray restarted the actor and retried its blocks"
        assert pl.read_parquet(target).sort(columns).equals(expected.sort(columns))


def test_an_engine_written_partition_is_swapped_in_and_read_lazily(tmp_path: Path) -> None:
    drops = dg.StaticPartitionsDefinition(["d1"])
    warehouse = tmp_path / "warehouse"
    (warehouse / "vectors").mkdir(parents=True)
    pl.DataFrame({"product_id": ["old"]}).write_parquet(warehouse / "vectors" / "d1.parquet")  # a whole-table write

    @dg.asset(partitions_def=drops)
    def vectors() -> dg.Output[StagedParquet]:
        staging = tmp_path / "staging" / "d1"
        staging.mkdir(parents=True)
        for part, ids in enumerate((["a", "b"], ["c"])):
            pl.DataFrame({"product_id": ids}).write_parquet(staging / f"part-{part:06d}.parquet")
        return dg.Output(StagedParquet(staging), metadata={"dagster/row_count": 3})

    seen = {}

    @dg.asset(partitions_def=drops)
    def downstream(vectors: pl.LazyFrame) -> pl.DataFrame:
        seen["lazy"] = isinstance(vectors, pl.LazyFrame)
        return vectors.collect()

    result = dg.materialize([vectors, downstream], partition_key="d1",
                            resources={"io_manager": parquet_io_manager(warehouse)})
    assert result.success and seen["lazy"]
    assert result.output_for_node("downstream")["product_id"].to_list() == ["a", "b", "c"]
    target = warehouse / "vectors" / "d1.parquet"
    assert target.is_dir() and sorted(p.name for p in target.iterdir()) == ["part-000000.parquet", "part-000001.parquet"]
    assert not (tmp_path / "staging" / "d1").exists(), "the staging directory was moved, not copied"
