"""Content-first collections against the search-log baseline, on the same data.

    topic coverage   collections whose feed has at least ``min_feed_size`` products
    precision@10     per collection whose attributes map onto ground-truth label columns: the share
                     of its top 10 products whose labels agree with every such attribute
    demand covered   share of search demand (distinct users) whose intent has a collection: for the
                     content-first system an intent fully parsed onto exactly a published attribute
                     set; for the baseline an intent in the group of a published query
"""

from __future__ import annotations

import polars as pl


def precision_at_k(feeds: pl.DataFrame, targets: pl.DataFrame, truth: pl.DataFrame, k: int = 10) -> pl.DataFrame:
    """feeds: collection_id, rank, product_id; targets: collection_id, attribute_id (evaluable ones);
    truth: product_id, attribute_id. -> collection_id, evaluated, agreeing, precision."""
    needed = targets.group_by("collection_id").agg(pl.len().alias("needed"))
    top = feeds.filter(pl.col("rank") <= k).select("collection_id", "product_id").join(needed, on="collection_id")
    agree = (top.join(targets, on="collection_id")
             .join(truth.select("product_id", "attribute_id").unique().with_columns(pl.lit(1).alias("hit")),
                   on=["product_id", "attribute_id"], how="left")
             .group_by("collection_id", "product_id", "needed").agg(pl.col("hit").sum().alias("hits"))
             .with_columns((pl.col("hits") == pl.col("needed")).alias("agrees")))
    return agree.group_by("collection_id").agg(
        pl.len().alias("evaluated"), pl.col("agrees").sum().alias("agreeing"),
    ).with_columns((pl.col("agreeing") / pl.col("evaluated")).alias("precision")).sort("collection_id")


def evaluable_targets(members: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """The (collection, attribute) pairs ground truth can judge: attributes some label maps onto."""
    known = truth.select("attribute_id").unique()
    return members.select("collection_id", "attribute_id").join(known, on="attribute_id").unique().sort(
        ["collection_id", "attribute_id"])


def demand_covered(intents: pl.DataFrame, covered: pl.Series) -> float:
    total = intents["demand"].sum()
    return round(float(intents.filter(covered)["demand"].sum() / total), 4) if total else 0.0


def system_figures(sizes: pl.DataFrame, precision: pl.DataFrame, demand_share: float, min_feed_size: int) -> dict:
    """sizes: collection_id, products (every candidate collection, published or not)."""
    evaluated = precision.filter(pl.col("evaluated") > 0)
    return {
        "collections": sizes.height,
        "collections_with_min_products": int((sizes["products"] >= min_feed_size).sum()),
        "precision_at_10": round(float(evaluated["agreeing"].sum() / evaluated["evaluated"].sum()), 4)
        if evaluated.height else None,
        "mean_precision_at_10": round(float(evaluated["precision"].mean()), 4) if evaluated.height else None,
        "collections_evaluated": evaluated.height,
        "demand_covered": demand_share,
    }


def compare_systems(collections: pl.DataFrame, feed_status: pl.DataFrame, feeds: pl.DataFrame,
                    baseline_feeds: pl.DataFrame, baseline: pl.DataFrame, members: pl.DataFrame,
                    intents: pl.DataFrame, truth: pl.DataFrame, min_feed_size: int) -> pl.DataFrame:
    """One row per system (content_first, search_log_baseline) with ``system_figures``.

    collections: collection_id, attribute_ids, merged_topics; feed_status: collection_id, status,
    products; feeds / baseline_feeds: collection_id, rank, product_id; baseline: the baseline's
    queries (collection_id, attribute_ids, group_key); members: collection_id, attribute_id;
    intents: demand, fully_parsed, attribute_ids, group_key; truth: product_id, attribute_id."""
    content_precision = precision_at_k(feeds, evaluable_targets(members, truth), truth)
    published = collections.join(feed_status.filter(pl.col("status") == "published").select("collection_id"),
                                 on="collection_id")
    served_sets = {frozenset(a) for a in published["attribute_ids"]} | {
        frozenset(topic.split("+")) for merged in published["merged_topics"] for topic in merged}
    content_covered = pl.Series([full and frozenset(a) in served_sets for full, a in
                                 zip(intents["fully_parsed"], intents["attribute_ids"])])
    content = system_figures(feed_status.select("collection_id", "products"), content_precision,
                             demand_covered(intents, content_covered), min_feed_size)

    baseline_sizes = baseline.select("collection_id").join(baseline_feeds.group_by("collection_id").agg(
        pl.len().alias("products")), on="collection_id", how="left").with_columns(pl.col("products").fill_null(0))
    baseline_members = baseline.select("collection_id", "attribute_ids").explode("attribute_ids").rename(
        {"attribute_ids": "attribute_id"}).drop_nulls()
    baseline_precision = precision_at_k(baseline_feeds, evaluable_targets(baseline_members, truth), truth)
    served = set(baseline_sizes.filter(pl.col("products") >= min_feed_size).join(baseline, on="collection_id")["group_key"])
    search = system_figures(baseline_sizes, baseline_precision,
                            demand_covered(intents, intents["group_key"].is_in(list(served))), min_feed_size)
    return pl.DataFrame([{"system": "content_first", **content}, {"system": "search_log_baseline", **search}])
