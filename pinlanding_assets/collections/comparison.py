"""Content-first collections against the search-log baseline, on the same data (the paper's comparison).

    viable topics    published collections whose feed has at least ``min_feed_size`` products (the
                     baseline: every query group with enough demand whose feed reaches that size)
    precision@10     per collection whose attributes map onto ground-truth label columns: the share
                     of its top 10 products whose labels agree with every such attribute
    per facet        per judged facet, the share of (page, attribute, top-10 product) that agree: how
                     often a page's colour (category, gender, occasion) is the product's
    demand covered   share of search demand (distinct users) whose intent has a collection: for the
                     content-first system an intent fully parsed onto exactly a published attribute
                     set or one its page serves; for the baseline an intent in the group of a viable query
"""

from __future__ import annotations

import polars as pl

from pinlanding_assets.facets import GROUND_TRUTH

JUDGED_FACETS = tuple(sorted(GROUND_TRUTH))


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


def facet_agreement(feeds: pl.DataFrame, targets: pl.DataFrame, truth: pl.DataFrame, facets: dict[str, str],
                    k: int = 10) -> dict[str, float | None]:
    """facet -> share of (collection, attribute, top-k product) whose ground truth has the attribute."""
    top = feeds.filter(pl.col("rank") <= k).select("collection_id", "product_id")
    triples = top.join(targets, on="collection_id").with_columns(
        pl.col("attribute_id").replace_strict(facets, default=None).alias("facet")).join(
        truth.select("product_id", "attribute_id").unique().with_columns(pl.lit(True).alias("hit")),
        on=["product_id", "attribute_id"], how="left").with_columns(pl.col("hit").fill_null(False))
    shares = triples.group_by("facet").agg(pl.col("hit").mean().round(4)).sort("facet")
    return {f: s for f, s in shares.iter_rows() if f is not None}


def evaluable_targets(members: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """The (collection, attribute) pairs ground truth can judge: attributes some label maps onto."""
    known = truth.select("attribute_id").unique()
    return members.select("collection_id", "attribute_id").join(known, on="attribute_id").unique().sort(
        ["collection_id", "attribute_id"])


def demand_covered(intents: pl.DataFrame, covered: pl.Series) -> float:
    total = intents["demand"].sum()
    return round(float(intents.filter(covered)["demand"].sum() / total), 4) if total else 0.0


def system_figures(sizes: pl.DataFrame, precision: pl.DataFrame, demand_share: float, min_feed_size: int,
                   per_facet: dict[str, float | None]) -> dict:
    """sizes: collection_id, products (every collection the system proposed, viable or not)."""
    evaluated = precision.filter(pl.col("evaluated") > 0)
    return {
        "collections": sizes.height,
        "viable_topics": int((sizes["products"] >= min_feed_size).sum()),
        "precision_at_10": round(float(evaluated["agreeing"].sum() / evaluated["evaluated"].sum()), 4)
        if evaluated.height else None,
        "mean_precision_at_10": round(float(evaluated["precision"].mean()), 4) if evaluated.height else None,
        "collections_evaluated": evaluated.height,
        "demand_covered": demand_share,
        **{f"precision_at_10_{facet}": per_facet.get(facet) for facet in JUDGED_FACETS},
    }


def compare_systems(collections: pl.DataFrame, feed_status: pl.DataFrame, feeds: pl.DataFrame,
                    baseline_feeds: pl.DataFrame, baseline: pl.DataFrame, members: pl.DataFrame,
                    intents: pl.DataFrame, truth: pl.DataFrame, min_feed_size: int,
                    facets: dict[str, str] | None = None) -> pl.DataFrame:
    """One row per system (content_first, search_log_baseline) with ``system_figures``.

    collections: collection_id, attribute_ids, merged_topics; feed_status: collection_id, status,
    products; feeds / baseline_feeds: collection_id, rank, product_id; baseline: the baseline's
    queries (collection_id, attribute_ids, group_key); members: collection_id, attribute_id;
    intents: demand, fully_parsed, attribute_ids, group_key; truth: product_id, attribute_id;
    facets: attribute_id -> facet (for the per-facet figures)."""
    facets = facets or {}
    content_targets = evaluable_targets(members, truth)
    content_precision = precision_at_k(feeds, content_targets, truth)
    # a page merged into another at the feed stage is served by it
    published = collections.join(feed_status.filter(pl.col("status").is_in(["published", "merged"]))
                                 .select("collection_id"), on="collection_id")
    served_sets = {frozenset(a) for a in published["attribute_ids"]} | {
        frozenset(topic.split("+")) for merged in published["merged_topics"] for topic in merged}
    content_covered = pl.Series([full and frozenset(a) in served_sets for full, a in
                                 zip(intents["fully_parsed"], intents["attribute_ids"])])
    content = system_figures(feed_status.filter(pl.col("status") != "merged").select("collection_id", "products"),
                             content_precision, demand_covered(intents, content_covered), min_feed_size,
                             facet_agreement(feeds, content_targets, truth, facets))

    baseline_sizes = baseline.select("collection_id").join(baseline_feeds.group_by("collection_id").agg(
        pl.len().alias("products")), on="collection_id", how="left").with_columns(pl.col("products").fill_null(0))
    baseline_members = baseline.select("collection_id", "attribute_ids").explode("attribute_ids").rename(
        {"attribute_ids": "attribute_id"}).drop_nulls()
    baseline_targets = evaluable_targets(baseline_members, truth)
    baseline_precision = precision_at_k(baseline_feeds, baseline_targets, truth)
    served = set(baseline_sizes.filter(pl.col("products") >= min_feed_size).join(baseline, on="collection_id")["group_key"])
    search = system_figures(baseline_sizes, baseline_precision,
                            demand_covered(intents, intents["group_key"].is_in(list(served))), min_feed_size,
                            facet_agreement(baseline_feeds, baseline_targets, truth, facets))
    return pl.DataFrame([{"system": "content_first", **content}, {"system": "search_log_baseline", **search}])


def estimated_vs_ground_truth(reliability: pl.DataFrame, content: dict) -> pl.DataFrame:
    """Per facet: the precision the release estimated without labels (its reliable attributes, pooled
    above their cuts), beside the top-10 agreement the labels measure: how far the estimate can be trusted."""
    reliable = reliability.filter(pl.col("reliable"))
    pooled = reliable.group_by("facet").agg(
        pl.len().alias("reliable_attributes"),
        (pl.col("agreeing").sum() / pl.col("judged_above_cut").sum()).round(4).alias("estimated_precision"))
    facets = sorted(set(reliability["facet"]))
    return pl.DataFrame({"facet": facets}).join(pooled, on="facet", how="left").with_columns(
        pl.col("facet").replace_strict({f: content.get(f"precision_at_10_{f}") for f in facets}, default=None,
                                       return_dtype=pl.Float64).alias("ground_truth_top10"))
