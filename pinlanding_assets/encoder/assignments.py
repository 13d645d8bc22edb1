"""Attributes per product from embedding similarity.

Exclusive facets (a product has one category, one gender) take the top-scoring attribute of the
facet; other facets take every attribute whose score passes its own threshold, calibrated on the
validation products' pairs (the F1-best cut; the global cut where an attribute has too few pairs).
"""

from __future__ import annotations

import numpy as np
import polars as pl

EXCLUSIVE_FACETS = {"category", "gender"}
MIN_PAIRS_FOR_OWN_THRESHOLD = 3
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


def assign(
    drop: str, product_ids: list[str], scores: np.ndarray, attribute_ids: list[str], facets: list[str],
    thresholds: dict[str, float],
) -> pl.DataFrame:
    """Vectorised over products: one argmax per exclusive facet, one comparison per other attribute."""
    product_index, attribute_index, methods = [], [], []
    facet_array = np.asarray(facets)
    for facet in sorted(set(facets)):
        columns = np.nonzero(facet_array == facet)[0]
        if facet in EXCLUSIVE_FACETS:
            # ties go to the smaller attribute id: columns are visited in id order
            order = columns[np.argsort(np.asarray(attribute_ids)[columns], kind="stable")]
            best = order[np.argmax(scores[:, order], axis=1)]
            product_index.append(np.arange(len(product_ids)))
            attribute_index.append(best)
            methods += ["top1"] * len(product_ids)
        else:
            cut = np.array([thresholds.get(attribute_ids[c], 1.0) for c in columns], np.float32)
            rows, cols = np.nonzero(scores[:, columns] >= cut)
            product_index.append(rows)
            attribute_index.append(columns[cols])
            methods += ["threshold"] * len(rows)
    rows = np.concatenate(product_index) if product_index else np.zeros(0, int)
    cols = np.concatenate(attribute_index) if attribute_index else np.zeros(0, int)
    ids, facet_names = np.asarray(attribute_ids, dtype=object), np.asarray(facets, dtype=object)
    frame = pl.DataFrame({
        "drop": [drop] * len(rows), "product_id": np.asarray(product_ids, dtype=object)[rows].tolist(),
        "attribute_id": ids[cols].tolist(), "facet": facet_names[cols].tolist(),
        "score": scores[rows, cols].astype(np.float32), "method": methods,
    }, schema=ASSIGNMENT_SCHEMA)
    return frame.sort(["product_id", "facet", "score", "attribute_id"], descending=[False, False, True, False])
