"""How good are the raw attributes and the vocabulary, measured against the ground truth.

Labels are read here and only here (and by later evaluation), never fed to a model.
- Category accuracy: the product's top category phrase, mapped to the nearest ground-truth
  articleType by MiniLM similarity, equals its own articleType.
- Colour accuracy: the ground-truth baseColour is among the product's colour phrases.
- Vocabulary coverage: the share of ground-truth values with >= 10 products that a kept vocabulary
  entry (phrase or alias, same facet) represents, exactly or with cosine similarity >= 0.8.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from pinlanding_assets.facets import COVERAGE_SIMILARITY, GROUND_TRUTH, kept_vocabulary, normalise_value


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def raw_accuracy(attributes: pl.DataFrame, ground_truth: pl.DataFrame, encode: Callable[[list[str]], np.ndarray]) -> dict:
    """Category and colour accuracy of the raw attributes on the products that have ground truth."""
    out: dict[str, float | int] = {}
    if "articleType" in ground_truth.columns:
        names = sorted({v for v in ground_truth["articleType"].to_list() if v})
        name_vectors = _unit(encode([normalise_value("category", n.lower()) for n in names]))
        top = attributes.filter((pl.col("facet") == "category") & (pl.col("rank") == 0)).join(
            ground_truth.select("product_id", "articleType"), on="product_id")
        if top.height:
            vectors = _unit(encode([normalise_value("category", v) for v in top["value"].to_list()]))
            nearest = [names[i] for i in (vectors @ name_vectors.T).argmax(axis=1)]
            out["category_accuracy"] = round(float(np.mean([a == b for a, b in zip(nearest, top["articleType"])])), 4)
            out["category_evaluated"] = top.height
    if "baseColour" in ground_truth.columns:
        colours = attributes.filter(pl.col("facet") == "colour").with_columns(
            pl.col("value").map_elements(lambda v: normalise_value("colour", v), return_dtype=pl.Utf8))
        predicted = colours.group_by("product_id").agg(pl.col("value"))
        truth = ground_truth.select("product_id", pl.col("baseColour").str.to_lowercase().alias("truth"))
        joined = truth.join(predicted, on="product_id", how="inner").filter(pl.col("truth") != "")
        if joined.height:
            hits = [t in values for t, values in zip(joined["truth"], joined["value"])]
            out["colour_accuracy"] = round(float(np.mean(hits)), 4)
            out["colour_evaluated"] = joined.height
    return out


def vocabulary_coverage(
    vocabulary: pl.DataFrame, ground_truth: pl.DataFrame, encode: Callable[[list[str]], np.ndarray], min_products: int = 10
) -> dict:
    """Share of frequent ground-truth values the kept vocabulary represents, overall and per facet."""
    kept = kept_vocabulary(vocabulary)
    per_facet, missing, covered_total, total = {}, [], 0, 0
    for facet, column in GROUND_TRUTH.items():
        if column not in ground_truth.columns:
            continue
        counts = ground_truth.group_by(column).len().filter((pl.col("len") >= min_products) & (pl.col(column) != ""))
        values = sorted(counts[column].to_list())
        if not values:
            continue
        entries = kept.filter(pl.col("facet") == facet)
        phrases = sorted(set(entries["phrase"].to_list()) | {a for al in entries["aliases"].to_list() for a in al})
        targets = [normalise_value(facet, v.lower()) for v in values]
        covered = [t in phrases for t in targets]
        if phrases:
            similarity = _unit(encode(targets)) @ _unit(encode(phrases)).T
            covered = [c or bool(similarity[i].max() >= COVERAGE_SIMILARITY) for i, c in enumerate(covered)]
        per_facet[facet] = round(float(np.mean(covered)), 4)
        missing += [f"{facet}:{v}" for v, c in zip(values, covered) if not c]
        covered_total += sum(covered)
        total += len(values)
    return {"coverage": round(covered_total / total, 4) if total else 0.0, "per_facet": per_facet,
            "ground_truth_values": total, "missing": missing}
