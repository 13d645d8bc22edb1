"""What a release publishes, judged as a merchandiser would, from a finished run's warehouse (after
`make run`, or any `pinlanding run`): label agreement, distinctness, type coverage and the comparison
with the search-log baseline.

    .venv/bin/python benchmarks/collection_quality.py [--release r001] [--json]

    top-10 agreement   per judged facet, the share of (page, attribute, top-10 product) whose catalog
                       label agrees (from `collection_comparison`: labels read by evaluation only)
    distinct pages     duplicate titles, duplicate attribute sets, published feeds overlapping by
                       Jaccard >= 0.8, refinements keeping >= 80% of a published parent's products
    product types      every catalog type (articleType) with >= 50 products: the page whose top 10
                       holds most of that type, and its share (the target: >= 0.8)
    comparison         published pages, viable topics of both systems and their ratio, precision@10; the
                       baseline's viable topics had it required 2, 3 or 5 distinct users per query group
    titles             LLM, template and deferred titles; the collections step's seconds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pinlanding_assets.collections.audit import page_audit  # noqa: E402
from pinlanding_assets.collections.comparison import JUDGED_FACETS  # noqa: E402
from pinlanding_assets.collections.feeds import read_feeds  # noqa: E402
from pinlanding_assets.settings import load_settings  # noqa: E402


def product_type_pages(feeds: pl.DataFrame, ground_truth: pl.DataFrame, min_products: int = 50) -> pl.DataFrame:
    """Per catalog type with ``min_products``: the page whose top 10 holds the largest share of it."""
    types = ground_truth.group_by("articleType").len().filter(pl.col("len") >= min_products)
    top = feeds.filter(pl.col("rank") <= 10).join(ground_truth.select("product_id", "articleType"), on="product_id")
    shares = top.group_by("collection_id").agg(pl.col("articleType"), pl.len().alias("shown"))
    rows = []
    for article_type, products in types.sort("articleType").iter_rows():
        best = (None, 0.0)
        for collection_id, kinds, shown in shares.iter_rows():
            share = sum(k == article_type for k in kinds) / shown
            if share > best[1] or (share == best[1] and best[0] and collection_id < best[0]):
                best = (collection_id, share)
        rows.append({"type": article_type, "products": products, "best_page": best[0], "share": round(best[1], 3)})
    return pl.DataFrame(rows, schema={"type": pl.Utf8, "products": pl.Int64, "best_page": pl.Utf8, "share": pl.Float64})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", help="release to judge (default: the newest with a comparison)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    paths = load_settings().paths
    warehouse = paths.warehouse_dir
    releases = sorted(p.stem for p in paths.asset_dir("collection_comparison").glob("*.parquet"))
    if not releases:
        raise SystemExit(f"no collection_comparison in {warehouse}: run `make run` first")
    release = args.release or releases[-1]
    collections = pl.read_parquet(paths.partition_path("collections", release))
    status = pl.read_parquet(paths.partition_path("collection_feeds", release))
    comparison = pl.read_parquet(paths.partition_path("collection_comparison", release))
    feeds = read_feeds(paths.feed_rows_dir(release))
    ground_truth = pl.concat([pl.read_parquet(p) for p in sorted(paths.asset_dir("catalog_ground_truth").glob("*.parquet"))],
                       how="diagonal_relaxed")
    audit = page_audit(collections, status, feeds, 0.8, 0.8)
    types = product_type_pages(feeds, ground_truth)
    content, baseline = (comparison.filter(pl.col("system") == s).row(0, named=True)
                         for s in ("content_first", "search_log_baseline"))
    intents = pl.read_parquet(paths.partition_path("demand_intents", release))
    baseline_feeds = pl.read_parquet(paths.partition_path("search_baseline", release))
    viable = baseline_feeds.group_by("query").len().filter(pl.col("len") >= load_settings().gates.min_feed_size)
    demand = intents.filter(pl.col("is_group_leader")).select(pl.col("intent").alias("query"), "group_demand")
    by_demand = {m: int(viable.join(demand, on="query").filter(pl.col("group_demand") >= m).height) for m in (2, 3, 5)}
    figures = {
        "release": release,
        "published_pages": int((status["status"] == "published").sum()),
        "top10_agreement": {f: content.get(f"precision_at_10_{f}") for f in JUDGED_FACETS},
        "baseline_top10_agreement": {f: baseline.get(f"precision_at_10_{f}") for f in JUDGED_FACETS},
        "duplicate_titles": len(audit["duplicate_titles"]),
        "duplicate_attribute_sets": len(audit["duplicate_attribute_sets"]),
        "feed_pairs_jaccard_ge_0_8": len(audit["near_duplicate_feeds"]),
        "refinements_keeping_ge_0_8": len(audit["redundant_refinements"]),
        "types_with_50_products": types.height,
        "types_with_a_page_of_them": int((types["share"] >= 0.8).sum()),
        "types_without": types.filter(pl.col("share") < 0.8).rows(named=True),
        "viable_topics": {"content_first": content["viable_topics"], "baseline": baseline["viable_topics"]},
        "viable_topics_ratio": round(content["viable_topics"] / baseline["viable_topics"], 3)
        if baseline["viable_topics"] else None,
        "baseline_viable_by_min_demand": by_demand,
        "ratio_by_min_demand": {m: round(content["viable_topics"] / n, 2) if n else None for m, n in by_demand.items()},
        "precision_at_10": {"content_first": content["precision_at_10"], "baseline": baseline["precision_at_10"]},
        "demand_covered": {"content_first": content["demand_covered"], "baseline": baseline["demand_covered"]},
        "titles": collections.group_by("title_source").len().sort("title_source").rows(),
        "deferred_titles": int(collections["title_reason"].fill_null("").str.starts_with("deferred").sum()),
    }
    if args.json:
        print(json.dumps(figures, default=str))
        return
    for key, value in figures.items():
        print(f"{key:32s} {value}")


if __name__ == "__main__":
    main()
