"""Attributes per product from embedding similarity.

Exclusive facets (a product has one category, one gender) take the top-scoring attribute of the
facet; other facets take every attribute whose score passes its own threshold, calibrated on the
validation products' pairs (the F1-best cut; the global cut where an attribute has too few pairs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pinlanding_assets.facets import EXCLUSIVE_FACETS
from resources.storage import StagedParquet

MIN_PAIRS_FOR_OWN_THRESHOLD = 3
GEMM_ROWS_MULTIPLE = 16
ASSIGNMENT_SCHEMA = {
    "drop": pl.Utf8, "product_id": pl.Utf8, "attribute_id": pl.Utf8, "facet": pl.Utf8, "score": pl.Float32,
    "method": pl.Utf8,
}


def _best_f1_cut(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    true_positives = np.cumsum(sorted_labels)
    precision = true_positives / np.arange(1, len(scores) + 1)
    recall = true_positives / max(labels.sum(), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    best = int(np.argmax(f1))
    return float(sorted_scores[best]), float(f1[best])


def calibrate_thresholds(scores: np.ndarray, positives: np.ndarray, attribute_ids: list[str]) -> dict[str, float]:
    """Per-attribute thresholds from validation scores (products x attributes) and 0/1 positives."""
    global_cut, _ = _best_f1_cut(scores.reshape(-1), positives.reshape(-1)) if positives.any() else (0.5, 0.0)
    thresholds = {}
    for j, attribute_id in enumerate(attribute_ids):
        column = positives[:, j]
        if column.sum() >= MIN_PAIRS_FOR_OWN_THRESHOLD:
            thresholds[attribute_id] = round(_best_f1_cut(scores[:, j], column)[0], 5)
        else:
            thresholds[attribute_id] = round(global_cut, 5)
    return thresholds


@dataclass(frozen=True)
class AttributeTable:
    """The release's attribute vectors, ordered by (facet, attribute id) so each facet is one slice of
    the score matrix, with their thresholds: what every block of products is scored against."""

    ids: np.ndarray  # (m,) object
    facets: np.ndarray  # (m,) object
    vectors: np.ndarray  # (m, d) float32
    cuts: np.ndarray  # (m,) float32, used outside exclusive facets
    slices: tuple[tuple[str, int, int], ...]  # (facet, start, stop)

    @classmethod
    def build(cls, attribute_ids: list[str], facets: list[str], vectors: np.ndarray,
              thresholds: dict[str, float]) -> "AttributeTable":
        order = _facet_order(attribute_ids, facets)
        ids = np.asarray([attribute_ids[j] for j in order], dtype=object)
        facet_array = np.asarray([facets[j] for j in order], dtype=object)
        slices, start = [], 0
        for facet in sorted(set(facets)):
            stop = start + int((facet_array == facet).sum())
            slices.append((facet, start, stop))
            start = stop
        return cls(ids, facet_array, np.ascontiguousarray(np.asarray(vectors, np.float32)[order]),
                   np.asarray([thresholds.get(i, 1.0) for i in ids], np.float32), tuple(slices))


def _facet_order(attribute_ids: list[str], facets: list[str]) -> list[int]:
    """Attribute positions in (facet, attribute id) order: the table's column order."""
    return sorted(range(len(attribute_ids)), key=lambda j: (facets[j], attribute_ids[j]))


def unusable_vectors(vectors: np.ndarray) -> list[str | None]:
    """Per product vector, why it cannot be scored (non-finite values, all zeros), or None."""
    finite = np.isfinite(vectors).all(axis=1)
    zero = ~np.any(vectors != 0, axis=1)
    return [None if ok and not empty else ("embedding has non-finite values" if not ok else "embedding is all zeros")
            for ok, empty in zip(finite.tolist(), zero.tolist())]


def assign_block(drop: str, product_ids: list[str], vectors: np.ndarray, table: AttributeTable) -> pl.DataFrame:
    """One block of products (in id order) scored against every attribute (one GEMM) and assigned;
    rows sorted as ``assign`` sorts them: the same rows per product whatever block it falls in."""
    import torch

    # BLAS may take another code path for a few rows than for many, and round differently: padding every
    # block to a multiple of 16 rows gives each product the same scores whatever block it falls in.
    padding = (-len(product_ids)) % GEMM_ROWS_MULTIPLE
    padded = np.concatenate([np.asarray(vectors, np.float32), np.zeros((padding, vectors.shape[1]), np.float32)])
    scores = (torch.from_numpy(padded) @ torch.from_numpy(table.vectors).T).numpy()[: len(product_ids)]
    return _assigned(drop, np.asarray(product_ids, dtype=object), scores, table)


def assign(
    drop: str, product_ids: list[str], scores: np.ndarray, attribute_ids: list[str], facets: list[str],
    thresholds: dict[str, float],
) -> pl.DataFrame:
    """Attributes for products whose scores against ``attribute_ids`` are given (products x attributes)."""
    order = _facet_order(attribute_ids, facets)
    table = AttributeTable.build(attribute_ids, facets, np.zeros((len(attribute_ids), 0), np.float32), thresholds)
    return _assigned(drop, np.asarray(product_ids, dtype=object), np.asarray(scores)[:, order], table)


def _assigned(drop: str, product_ids: np.ndarray, scores: np.ndarray, table: AttributeTable) -> pl.DataFrame:
    """Vectorised over products: one argmax per exclusive facet, one comparison per other attribute;
    ``scores`` columns in the table's order (ties in a top-1 go to the smaller attribute id)."""
    rows_parts, cols_parts, methods = [], [], []
    for facet, start, stop in table.slices:
        block = scores[:, start:stop]
        if facet in EXCLUSIVE_FACETS:
            rows_parts.append(np.arange(len(product_ids)))
            cols_parts.append(start + np.argmax(block, axis=1))
            methods.append(np.full(len(product_ids), "top1", dtype=object))
        else:
            rows, cols = np.nonzero(block >= table.cuts[start:stop])
            rows_parts.append(rows)
            cols_parts.append(start + cols)
            methods.append(np.full(len(rows), "threshold", dtype=object))
    rows = np.concatenate(rows_parts) if rows_parts else np.zeros(0, int)
    cols = np.concatenate(cols_parts) if cols_parts else np.zeros(0, int)
    frame = pl.DataFrame({
        "drop": np.full(len(rows), drop, dtype=object), "product_id": product_ids[rows],
        "attribute_id": table.ids[cols], "facet": table.facets[cols],
        "score": scores[rows, cols].astype(np.float32),
        "method": np.concatenate(methods) if methods else np.zeros(0, object),
    }, schema=ASSIGNMENT_SCHEMA)
    return frame.sort(["product_id", "facet", "score", "attribute_id"], descending=[False, False, True, False])


QUARANTINE_SCHEMA = {"drop": pl.Utf8, "product_id": pl.Utf8, "reason": pl.Utf8}


def _unscorable_rows(batch: pa.Table, width: int) -> pa.Table:
    vectors = batch.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    reasons = unusable_vectors(vectors)
    bad = [i for i, reason in enumerate(reasons) if reason]
    return pa.table({"product_id": pa.array(batch.column("product_id").take(pa.array(bad, pa.int64())).to_pylist(),
                                            pa.string()),
                     "reason": pa.array([reasons[i] for i in bad], pa.string())})


def unscorable_with_ray(embeddings: Path, drop: str, width: int, block_rows: int = 4096) -> pl.DataFrame:
    """Products whose vector cannot be scored, with the reason: Ray tasks check every block and only
    the (few) bad rows come back to this process."""
    import ray

    files = _embedding_files(embeddings)
    dataset = ray.data.read_parquet(files, columns=["product_id", "embedding"]).map_batches(
        _unscorable_rows, fn_kwargs={"width": width}, batch_format="pyarrow", batch_size=block_rows)
    rows = [pl.from_arrow(t) for t in ray.get(dataset.to_arrow_refs())]
    bad = pl.concat(rows) if rows else pl.DataFrame(schema={"product_id": pl.Utf8, "reason": pl.Utf8})
    return bad.select(pl.lit(drop).alias("drop"), "product_id", "reason").sort("product_id").cast(QUARANTINE_SCHEMA)


def _embedding_files(embeddings: Path) -> list[str]:
    files = [str(f) for f in sorted(embeddings.glob("*.parquet"))]
    if not files:
        raise FileNotFoundError(f"no embedding files under {embeddings}")
    return files


class BlockScorer:
    """Ray Data model stage: a block of product vectors -> its assignment rows (unusable vectors are
    left out here; ``unscorable_with_ray`` names them)."""

    def __init__(self, table: AttributeTable, drop: str, release: str, version: str, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        # arrays arrive read-only from Ray's object store; torch wants a writable buffer
        self.table = dataclasses.replace(table, vectors=np.array(table.vectors))
        self.drop, self.release, self.version = drop, release, version

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = np.asarray(batch.column("product_id").to_pylist(), dtype=object)
        width = self.table.vectors.shape[1]
        vectors = batch.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        usable = np.asarray([r is None for r in unusable_vectors(vectors)], bool)
        frame = assign_block(self.drop, ids[usable].tolist(), vectors[usable], self.table)
        return frame.with_columns(pl.lit(self.release).alias("release"), pl.lit(self.version).alias("model_version")
                                  ).to_arrow().cast(ASSIGNMENT_ARROW_SCHEMA)


ASSIGNMENT_ARROW_SCHEMA = pa.schema([
    ("drop", pa.large_string()), ("product_id", pa.large_string()), ("attribute_id", pa.large_string()),
    ("facet", pa.large_string()), ("score", pa.float32()), ("method", pa.large_string()),
    ("release", pa.large_string()), ("model_version", pa.large_string()),
])


def assign_with_ray(embeddings: Path, table: AttributeTable, drop: str, release: str, version: str,
                    stage_options: dict, staging: Path, block_rows: int = 4096, threads: int = 1) -> StagedParquet:
    """Blocked scoring on Ray: Ray reads the drop's embedding files, each block of ``block_rows``
    products is one GEMM against the attribute table, and Ray writes the rows under ``staging``. Memory
    is bounded by the block; the result does not depend on its size."""
    import ray

    from resources.tables import write_parquet_parts

    dataset = ray.data.read_parquet(_embedding_files(embeddings), columns=["product_id", "embedding"])
    dataset = dataset.map_batches(BlockScorer, fn_constructor_kwargs={
        "table": table, "drop": drop, "release": release, "version": version, "threads": threads},
        batch_format="pyarrow", batch_size=block_rows, **stage_options)
    write_parquet_parts(dataset, staging, ASSIGNMENT_ARROW_SCHEMA, rows_per_file=16 * block_rows)
    return StagedParquet(staging)
