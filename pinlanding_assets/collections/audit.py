"""What a merchandiser checks before a release goes live: are the published pages distinct?

    duplicate titles            two pages with the same name (case-insensitive)
    duplicate attribute sets    two pages for the same attributes
    near-duplicate feeds        a page whose feed shows nearly the same products as a better-ranked one
                                (Jaccard of the two published feeds at least the cut)
    redundant refinements       a page that adds one attribute to another published page but keeps more
                                than the allowed share of its products
"""

from __future__ import annotations

import polars as pl

from pinlanding_assets.collections.topics import visible_duplicates


def page_audit(collections: pl.DataFrame, feed_status: pl.DataFrame, feeds: pl.DataFrame, duplicate_jaccard: float,
               max_refinement_share: float) -> dict[str, list]:
    """Each problem kind -> its instances (empty lists: the pages are distinct). Only published pages count."""
    published = collections.join(feed_status.filter(pl.col("status") == "published").select("collection_id"),
                                 on="collection_id").sort("rank")
    titles = published.group_by(pl.col("title").str.to_lowercase()).agg(pl.col("collection_id").sort()).filter(
        pl.col("collection_id").list.len() > 1)
    sets = published.group_by(pl.col("attribute_ids").list.sort()).agg(pl.col("collection_id").sort()).filter(
        pl.col("collection_id").list.len() > 1)
    twins = visible_duplicates(feeds.select("collection_id", "product_id"), published["collection_id"].to_list(),
                               duplicate_jaccard)
    by_set = {tuple(sorted(a)): (c, n) for c, a, n in published.select("collection_id", "attribute_ids", "products").iter_rows()}
    refinements = []
    for key, (child, size) in by_set.items():
        for left_out in key if len(key) > 1 else ():
            parent = by_set.get(tuple(a for a in key if a != left_out))
            if parent and parent[1] and size / parent[1] > max_refinement_share:
                refinements.append({"page": child, "parent": parent[0], "share": round(size / parent[1], 3)})
    return {
        "duplicate_titles": titles["collection_id"].to_list(),
        "duplicate_attribute_sets": sets["collection_id"].to_list(),
        "near_duplicate_feeds": [{"page": c, "twin": t, "jaccard": j} for c, (t, j) in twins.items()],
        "redundant_refinements": sorted(refinements, key=lambda r: r["page"]),
    }
