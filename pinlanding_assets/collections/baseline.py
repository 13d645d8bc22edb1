"""The search-log baseline PinLanding is measured against: collections are the search queries with
enough demand (one per group of near-duplicate queries: every group with at least ``min_demand``
distinct users, not "as many as PinLanding published"), and each feed is the products whose embedding
is nearest to the query's text embedding (same dual encoder, same product vectors as the content-first
feeds). A query whose feed reaches the minimum feed size is a viable topic of the baseline.

A product enters a baseline feed only above a similarity floor: by default the mean calibrated
attribute threshold, the bar a phrase must clear before the content-first system assigns it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pinlanding_assets.collections.titles import slug_for

BASELINE_FEED_SCHEMA = {"collection_id": pl.Utf8, "query": pl.Utf8, "rank": pl.Int64, "product_id": pl.Utf8,
                        "relevance": pl.Float64}


@dataclass(frozen=True)
class BaselineConfig:
    max_feed_size: int = 100


def baseline_queries(intents: pl.DataFrame, min_demand: int) -> pl.DataFrame:
    """The baseline's collections: every query group with at least ``min_demand`` distinct users, each
    represented by its most searched query, most demanded first (one per page name)."""
    leaders = intents.filter(pl.col("is_group_leader") & (pl.col("group_demand") >= min_demand)).sort(
        ["group_demand", "intent"], descending=[True, False])
    return leaders.select(
        pl.col("intent").map_elements(lambda q: "q-" + slug_for([q]), return_dtype=pl.Utf8).alias("collection_id"),
        pl.col("intent").alias("query"), "group_key", "group_demand", "attribute_ids",
    ).unique("collection_id", keep="first", maintain_order=True)


def nearest_products(query_vectors: np.ndarray, product_vectors: np.ndarray, product_ids: list[str],
                     queries: pl.DataFrame, floor: float, config: BaselineConfig) -> pl.DataFrame:
    """Per query, the products above ``floor`` by cosine similarity, best first (ties: smaller id)."""
    order_ids = np.asarray(product_ids)
    rows = []
    similarity = query_vectors @ product_vectors.T
    for i, (collection_id, query) in enumerate(queries.select("collection_id", "query").iter_rows()):
        scores = np.round(similarity[i].astype(np.float64), 6)
        above = np.nonzero(scores >= floor)[0]
        ranked = above[np.lexsort((order_ids[above], -scores[above]))][: config.max_feed_size]
        rows += [(collection_id, query, rank, str(order_ids[j]), float(scores[j])) for rank, j in enumerate(ranked, 1)]
    return pl.DataFrame(rows, schema=BASELINE_FEED_SCHEMA, orient="row")
