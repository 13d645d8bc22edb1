"""A hand-written fashion vocabulary in the curated_vocabulary schema, for tests that need one without
running the VLM stage: the phrases the real pipeline keeps (see README figures)."""

from __future__ import annotations

import polars as pl

from pinlanding_assets.attributes.vocabulary import attribute_id

PHRASES = {
    "category": ["t-shirt", "shirt", "jeans", "shoes", "sports shoes", "casual shoes", "handbag", "watch", "kurta",
                 "heels", "flats", "flip flops", "top", "sandal", "belt", "sunglasses", "backpack", "trousers", "sock",
                 "wallet", "dress", "shorts", "jacket"],
    "colour": ["black", "white", "blue", "navy blue", "red", "green", "grey", "brown", "pink", "yellow", "purple"],
    "gender": ["men", "women", "unisex"],
    "pattern": ["striped", "printed", "checked"],
}


def fashion_vocabulary() -> pl.DataFrame:
    rows = [{"attribute_id": attribute_id(facet, phrase), "facet": facet, "phrase": phrase, "aliases": [],
             "support": 10, "decision": "keep"} for facet, phrases in PHRASES.items() for phrase in phrases]
    return pl.DataFrame(rows, schema={"attribute_id": pl.Utf8, "facet": pl.Utf8, "phrase": pl.Utf8,
                                      "aliases": pl.List(pl.Utf8), "support": pl.Int64, "decision": pl.Utf8})
