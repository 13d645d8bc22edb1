"""Training pairs for the dual encoder and the product split, without torch: (product, attribute)
pairs from the attribute stage's labels and from vocabulary phrases in titles, and the stable
train / validation / holdout split by a hash of the product id."""

from __future__ import annotations

import hashlib

import polars as pl

from pinlanding_assets.facets import kept_vocabulary, normalise_value, title_tokens, vocabulary_lookup

# Shares of products held out of training: the holdout (evaluation against ground truth only) and the
# validation split (early stopping, threshold calibration, and the collections' reliability estimates).
HOLDOUT_SHARE = 0.2
VALIDATION_SHARE = 0.15


def split_of(product_id: str, seed: int, holdout_share: float, validation_share: float) -> str:
    """A product's split from a hash of its id: 'holdout' (evaluation only), 'validation' or 'train'."""
    value = int(hashlib.sha1(f"split:{seed}:{product_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if value < holdout_share:
        return "holdout"
    return "validation" if value < holdout_share + validation_share else "train"


def title_matches(products: pl.DataFrame, vocabulary: pl.DataFrame) -> pl.DataFrame:
    """(product_id, attribute_id) for kept phrases that occur as whole words in the product's title.

    A phrase matches a run of consecutive title words, so each title's runs (up to the longest phrase)
    are looked up in a table of phrases: the cost grows with the titles, not with the vocabulary."""
    kept = kept_vocabulary(vocabulary)
    patterns: dict[str, set[str]] = {}
    for row in kept.iter_rows(named=True):
        for phrase in [row["phrase"], *(row["aliases"] or [])]:
            tokens = title_tokens(phrase).strip()
            if tokens:
                patterns.setdefault(tokens, set()).add(row["attribute_id"])
    longest = max((len(p.split(" ")) for p in patterns), default=0)
    rows = []
    for product_id, title in products.select("product_id", "title").iter_rows():
        words = title_tokens(title).split()
        found = {aid for n in range(1, longest + 1) for i in range(len(words) - n + 1)
                 for aid in patterns.get(" ".join(words[i:i + n]), ())}
        rows += [{"product_id": product_id, "attribute_id": aid} for aid in found]
    return pl.DataFrame(rows, schema={"product_id": pl.Utf8, "attribute_id": pl.Utf8}).unique().sort(
        ["product_id", "attribute_id"])


def vlm_pairs(raw: pl.DataFrame, vocabulary: pl.DataFrame) -> pl.DataFrame:
    lookup = vocabulary_lookup(vocabulary)
    rows = [{"product_id": pid, "attribute_id": lookup[(facet, normalise_value(facet, value))]}
            for pid, facet, value in raw.select("product_id", "facet", "value").iter_rows()
            if (facet, normalise_value(facet, value)) in lookup]
    return pl.DataFrame(rows, schema={"product_id": pl.Utf8, "attribute_id": pl.Utf8}).unique().sort(
        ["product_id", "attribute_id"])
