"""The dual encoder against ground truth, on products it never trained on.

The ground-truth columns (articleType, baseColour, usage, gender) are mapped onto the vocabulary (exact
normalised phrase or alias, else the nearest phrase of the facet by MiniLM similarity >= 0.8).
For each encoder (fused image+title, image only, and a text-only baseline: MiniLM on the title
against MiniLM on the phrase, untrained) it reports Recall@10 of the ground-truth attributes among
the top 10 ranked attributes, and per facet the precision and recall of the top-1 attribute.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from pinlanding_assets.facets import (
    COVERAGE_SIMILARITY,
    EXCLUSIVE_FACETS,
    GROUND_TRUTH,
    kept_vocabulary,
    normalise_value,
    vocabulary_lookup,
)


def ground_truth_attributes(
    ground_truth: pl.DataFrame, vocabulary: pl.DataFrame, encode: Callable[[list[str]], np.ndarray]
) -> pl.DataFrame:
    """(product_id, facet, attribute_id) for every label value the vocabulary represents."""
    lookup = vocabulary_lookup(vocabulary)
    kept = kept_vocabulary(vocabulary)
    mapping: dict[tuple[str, str], str] = {}
    for facet, column in GROUND_TRUTH.items():
        if column not in ground_truth.columns:
            continue
        entries = kept.filter(pl.col("facet") == facet)
        values = sorted({v for v in ground_truth[column].to_list() if v})
        if entries.is_empty() or not values:
            continue
        phrase_vectors = encode(entries["phrase"].to_list())
        value_vectors = encode([normalise_value(facet, v.lower()) for v in values])
        similarity = value_vectors @ phrase_vectors.T
        for i, value in enumerate(values):
            exact = lookup.get((facet, normalise_value(facet, value.lower())))
            if exact:
                mapping[(facet, value)] = exact
            elif similarity[i].max() >= COVERAGE_SIMILARITY:
                mapping[(facet, value)] = entries["attribute_id"][int(similarity[i].argmax())]
    rows = []
    for record in ground_truth.iter_rows(named=True):
        for facet, column in GROUND_TRUTH.items():
            attribute = mapping.get((facet, record.get(column) or ""))
            if attribute:
                rows.append({"product_id": record["product_id"], "facet": facet, "attribute_id": attribute})
    return pl.DataFrame(rows, schema={"product_id": pl.Utf8, "facet": pl.Utf8, "attribute_id": pl.Utf8})


def evaluate_scores(
    scores: np.ndarray, product_ids: list[str], attribute_ids: list[str], facets: list[str], truth: pl.DataFrame,
    k: int = 10, thresholds: dict[str, float] | None = None,
) -> dict:
    """Recall@k of the ground-truth attributes, and per-facet precision/recall of the assignments:
    top-1 for exclusive facets (and for every facet when no thresholds are given), otherwise every
    attribute of the facet whose score passes its calibrated threshold."""
    row = {pid: i for i, pid in enumerate(product_ids)}
    column = {aid: j for j, aid in enumerate(attribute_ids)}
    truth = truth.filter(pl.col("product_id").is_in(product_ids) & pl.col("attribute_id").is_in(attribute_ids))
    top_k = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    recalls = []
    for pid, group in truth.group_by("product_id", maintain_order=True):
        i = row[pid[0]]
        wanted = {column[a] for a in group["attribute_id"]}
        recalls.append(len(wanted & set(top_k[i].tolist())) / len(wanted))
    per_facet = {}
    facet_array = np.array(facets)
    for facet in sorted(set(facets)):
        columns = np.nonzero(facet_array == facet)[0]
        facet_truth = dict(truth.filter(pl.col("facet") == facet).select("product_id", "attribute_id").iter_rows())
        if not facet_truth:
            continue
        assigned = 0
        correct = 0
        for pid, true_attribute in facet_truth.items():
            facet_scores = scores[row[pid], columns]
            if thresholds is None or facet in EXCLUSIVE_FACETS:
                chosen = {attribute_ids[columns[int(np.argmax(facet_scores))]]}
            else:
                chosen = {attribute_ids[c] for c, s in zip(columns, facet_scores) if s >= thresholds[attribute_ids[c]]}
            assigned += len(chosen)
            correct += true_attribute in chosen
        per_facet[facet] = {"precision": round(correct / assigned, 4) if assigned else 0.0,
                            "recall": round(correct / len(facet_truth), 4), "products": len(facet_truth)}
    return {"recall_at_10": round(float(np.mean(recalls)), 4) if recalls else 0.0, "products": len(recalls),
            "per_facet": per_facet}


def encode_products(encoder, products: pl.DataFrame, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Fused, image-only and title-only vectors of ``products`` in this process (evaluation path)."""
    import torch

    from pinlanding_assets.encoder.embeddings import encode_batch
    from pinlanding_assets.encoder.model import EMBED_DIM
    from pinlanding_assets.encoder.training import load_pixels

    parts: dict[str, list[np.ndarray]] = {"fused": [], "image_only": [], "title": []}
    blank = products["is_blank"].fill_null(False).to_list() if "is_blank" in products.columns else None
    for start in range(0, products.height, batch_size):
        chunk = products.slice(start, batch_size)
        pixels, ok = load_pixels(chunk["image_path"].to_list(), encoder.preprocess)
        if blank is not None:
            ok &= ~torch.tensor(blank[start : start + batch_size])
        fused, image, title = encode_batch(encoder, pixels, ok, chunk["title"].to_list())
        parts["fused"].append(fused.numpy())
        parts["image_only"].append(image.numpy())
        parts["title"].append(title.numpy())
    return {name: np.concatenate(chunks) if chunks else np.zeros((0, EMBED_DIM), np.float32) for name, chunks in parts.items()}


def evaluate_encoders(
    encoder, products: pl.DataFrame, ground_truth: pl.DataFrame, vocabulary: pl.DataFrame,
    thresholds: dict[str, float] | None = None,
) -> dict:
    """The three encoders side by side on ``products`` (which the encoder must not have trained on)."""
    from resources.models import minilm_encoder

    encode = minilm_encoder()
    kept = kept_vocabulary(vocabulary).sort("attribute_id")
    attribute_ids, facets, phrases = kept["attribute_id"].to_list(), kept["facet"].to_list(), kept["phrase"].to_list()
    truth = ground_truth_attributes(ground_truth, vocabulary, encode)
    vectors = encode_products(encoder, products)
    phrase_vectors = encoder.encode_phrases(phrases)
    product_ids = products["product_id"].to_list()
    text_baseline = encode(products["title"].to_list()) @ encode(phrases).T
    return {
        "fused": evaluate_scores(vectors["fused"] @ phrase_vectors.T, product_ids, attribute_ids, facets, truth,
                                 thresholds=thresholds),
        "image_only": evaluate_scores(vectors["image_only"] @ phrase_vectors.T, product_ids, attribute_ids, facets, truth),
        "text_only": evaluate_scores(text_baseline, product_ids, attribute_ids, facets, truth),
    }
