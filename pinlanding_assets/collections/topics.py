"""Collection topics: combinations of 1-3 attributes from different facets, scored by demand and content.

    attributes per product (from the assignments) -> every combination that contains an anchor facet
    (a category: "black dresses", not "black") with at most one attribute per facet -> products that
    carry all of it (content support) -> matching search intents (demand) -> score -> near-duplicates
    merged (product sets that overlap almost completely: keep the better topic) -> top N.

Attributes the encoder hands out far more often than the VLM ever said them (an over-assigned
attribute, e.g. a noisy "stole" pattern on a third of the catalog) are not used, with a reason.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations

import polars as pl

from pinlanding_assets.collections.titles import slug_for, write_title
from pinlanding_assets.demand.intents import FACET_ORDER


@dataclass(frozen=True)
class TopicConfig:
    min_products: int = 10
    max_attributes: int = 3
    anchor_facets: tuple[str, ...] = ("category",)
    max_collections: int = 150
    duplicate_jaccard: float = 0.9
    max_over_assignment: float = 10.0


@dataclass
class Topic:
    attribute_ids: tuple[str, ...]
    products: frozenset[str]
    demand: int = 0
    exact_demand: int = 0
    intents: tuple[str, ...] = ()
    score: float = 0.0
    merged: tuple[str, ...] = ()


def over_assigned(assignments: pl.DataFrame, vocabulary: pl.DataFrame, sampled_products: int,
                  limit: float) -> dict[str, str]:
    """attribute_id -> reason, for attributes assigned to ``limit``x more products than the VLM saw them on."""
    products = assignments["product_id"].n_unique()
    if not products or not sampled_products:
        return {}
    shares = assignments.group_by("attribute_id").agg(pl.col("product_id").n_unique().alias("assigned")).join(
        vocabulary.select("attribute_id", "support"), on="attribute_id")
    reasons = {}
    for row in shares.iter_rows(named=True):
        ratio = (row["assigned"] / products) / (row["support"] / sampled_products)
        if ratio > limit:
            reasons[row["attribute_id"]] = (f"over-assigned: on {row['assigned'] / products:.0%} of products but in "
                                            f"{row['support'] / sampled_products:.1%} of VLM answers ({ratio:.0f}x)")
    return reasons


def _phrase(attribute_id: str) -> str:
    return attribute_id.split(":", 1)[1]


def _order(attribute_ids, facets: dict[str, str]) -> tuple[str, ...]:
    return tuple(sorted(attribute_ids, key=lambda a: (FACET_ORDER.index(facets[a]), a)))


def candidate_topics(assignments: pl.DataFrame, facets: dict[str, str], excluded: set[str],
                     config: TopicConfig) -> dict[tuple[str, ...], set[str]]:
    """Topic -> products carrying all its attributes, for topics with an anchor and enough products."""
    per_product: dict[str, list[str]] = defaultdict(list)
    for product_id, attribute_id in assignments.select("product_id", "attribute_id").iter_rows():
        if attribute_id not in excluded and attribute_id in facets:
            per_product[product_id].append(attribute_id)
    topics: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for product_id, attributes in per_product.items():
        attributes = sorted(set(attributes))
        anchors = [a for a in attributes if facets[a] in config.anchor_facets]
        for anchor in anchors:
            others = [a for a in attributes if facets[a] not in config.anchor_facets]
            for size in range(0, config.max_attributes):
                for extra in combinations(others, size):
                    # one attribute per facet, and no phrase twice ("casual" style + "casual" occasion)
                    if len({facets[a] for a in extra}) == size and len({_phrase(a) for a in (anchor, *extra)}) == size + 1:
                        topics[_order((anchor, *extra), facets)].add(product_id)
    return {key: products for key, products in topics.items() if len(products) >= config.min_products}


def attach_demand(topics: dict[tuple[str, ...], set[str]], intents: pl.DataFrame) -> list[Topic]:
    """Demand = intents whose slots are exactly the topic's attributes (extra words allowed)."""
    by_set: dict[frozenset[str], list[tuple[str, int, bool]]] = defaultdict(list)
    for row in intents.filter(pl.col("parsed")).iter_rows(named=True):
        by_set[frozenset(row["attribute_ids"])].append((row["intent"], row["demand"], row["fully_parsed"]))
    result = []
    for key in sorted(topics):
        matches = sorted(by_set.get(frozenset(key), []), key=lambda m: (-m[1], m[0]))
        result.append(Topic(
            attribute_ids=key, products=frozenset(topics[key]),
            demand=sum(m[1] for m in matches), exact_demand=sum(m[1] for m in matches if m[2]),
            intents=tuple(m[0] for m in matches[:5]),
        ))
    return result


def score_topics(topics: list[Topic]) -> list[Topic]:
    """Demand first (log scale), content support as the tie-breaker in [0, 1]; sorted best first."""
    largest = max((len(t.products) for t in topics), default=1)
    for topic in topics:
        topic.score = round(math.log1p(topic.demand) + math.log1p(len(topic.products)) / math.log1p(largest), 6)
    return sorted(topics, key=lambda t: (-t.score, len(t.attribute_ids), t.attribute_ids))


def merge_near_duplicates(ranked: list[Topic], config: TopicConfig) -> tuple[list[Topic], list[tuple[Topic, Topic]]]:
    """Walk best-first; a topic whose products overlap a kept one by Jaccard >= cut merges into it."""
    kept: list[Topic] = []
    merged: list[tuple[Topic, Topic]] = []
    for topic in ranked:
        twin = next((k for k in kept
                     if len(k.products & topic.products) / len(k.products | topic.products) >= config.duplicate_jaccard),
                    None)
        if twin is not None:
            twin.merged = (*twin.merged, "+".join(topic.attribute_ids))
            twin.demand += topic.demand
            twin.exact_demand += topic.exact_demand
            merged.append((topic, twin))
            continue
        kept.append(topic)
    return kept, merged


COLLECTION_SCHEMA = {
    "collection_id": pl.Utf8, "rank": pl.Int64, "title": pl.Utf8, "title_source": pl.Utf8, "title_reason": pl.Utf8,
    "description": pl.Utf8, "anchor": pl.Utf8, "attribute_ids": pl.List(pl.Utf8), "facets": pl.List(pl.Utf8),
    "phrases": pl.List(pl.Utf8), "products": pl.Int64, "demand": pl.Int64, "exact_demand": pl.Int64,
    "intents": pl.List(pl.Utf8), "score": pl.Float64, "merged_topics": pl.List(pl.Utf8),
}
GAP_SCHEMA = {"intent": pl.Utf8, "demand": pl.Int64, "bucket": pl.Utf8, "attribute_ids": pl.List(pl.Utf8),
              "remainder": pl.Utf8, "reason": pl.Utf8}


@dataclass
class CollectionPlan:
    collections: pl.DataFrame
    gaps: pl.DataFrame
    excluded: dict[str, str]
    candidates: int
    merged: int


def _gap_reason(row: dict, facets: dict[str, str], published: dict[frozenset, str],
                merged_into: dict[frozenset, str], carriers: dict[str, set[str]], config: TopicConfig) -> str | None:
    attributes = frozenset(row["attribute_ids"])
    if not attributes:
        return "no vocabulary attribute in the query"
    if attributes in published or attributes in merged_into:
        if row["remainder"]:
            target = published.get(attributes) or merged_into[attributes]
            return f"'{row['remainder']}' is not in the vocabulary (nearest collection: {target})"
        return None
    named = [facets[a] for a in attributes]
    repeated = sorted({f for f in named if named.count(f) > 1})
    if repeated:
        return f"several {', '.join(repeated)} values in one query"
    if not any(f in config.anchor_facets for f in named):
        return "no product type in the query"
    if len(attributes) > config.max_attributes:
        return f"more than {config.max_attributes} attributes"
    support = set.intersection(*(carriers.get(a, set()) for a in attributes))
    if len(support) < config.min_products:
        return f"only {len(support)} products carry it (minimum {config.min_products})"
    return f"ranked below the top {config.max_collections} topics"


def plan_collections(assignments: pl.DataFrame, vocabulary: pl.DataFrame, intents: pl.DataFrame,
                     sampled_products: int, chat, config: TopicConfig) -> CollectionPlan:
    """Candidate topics -> demand -> score -> merge near-duplicates -> top N with LLM titles; plus the gaps."""
    kept = vocabulary.filter(pl.col("decision") == "keep")
    facets = dict(zip(kept["attribute_id"], kept["facet"]))
    phrases = dict(zip(kept["attribute_id"], kept["phrase"]))
    excluded = over_assigned(assignments, kept, sampled_products, config.max_over_assignment)
    candidates = candidate_topics(assignments, facets, set(excluded), config)
    ranked = score_topics(attach_demand(candidates, intents))
    chosen, merged = merge_near_duplicates(ranked, config)
    chosen = chosen[: config.max_collections]
    rows, slugs = [], set()
    for rank, topic in enumerate(chosen, 1):
        attributes = [(facets[a], phrases[a]) for a in topic.attribute_ids]
        slug = slug_for([p for _, p in attributes])
        if slug in slugs:  # two attribute sets with the same words: a stable suffix keeps both pages apart
            slug = f"{slug}-{hashlib.sha1('|'.join(topic.attribute_ids).encode()).hexdigest()[:6]}"
        slugs.add(slug)
        title, source, reason = write_title(attributes, chat)
        anchor = next(p for f, p in attributes if f in config.anchor_facets)
        rows.append({
            "collection_id": slug, "rank": rank, "title": title, "title_source": source, "title_reason": reason,
            "description": f"{len(topic.products)} products matching {', '.join(p for _, p in attributes)}, "
                           "ranked by how closely each one matches.",
            "anchor": slug_for([anchor]), "attribute_ids": list(topic.attribute_ids),
            "facets": [f for f, _ in attributes], "phrases": [p for _, p in attributes],
            "products": len(topic.products), "demand": topic.demand, "exact_demand": topic.exact_demand,
            "intents": list(topic.intents), "score": topic.score, "merged_topics": list(topic.merged),
        })
    collections = pl.DataFrame(rows, schema=COLLECTION_SCHEMA)
    published = {frozenset(r["attribute_ids"]): r["collection_id"] for r in rows}
    merged_into = {frozenset(m.attribute_ids): published[frozenset(twin.attribute_ids)]
                   for m, twin in merged if frozenset(twin.attribute_ids) in published}
    carriers: dict[str, set[str]] = defaultdict(set)
    for product_id, attribute_id in assignments.select("product_id", "attribute_id").iter_rows():
        carriers[attribute_id].add(product_id)
    gaps = []
    for row in intents.filter(pl.col("is_group_leader")).iter_rows(named=True):
        reason = _gap_reason(row, facets, published, merged_into, carriers, config)
        if reason:
            gaps.append({"intent": row["intent"], "demand": row["group_demand"], "bucket": row["bucket"],
                         "attribute_ids": row["attribute_ids"], "remainder": row["remainder"], "reason": reason})
    gap_table = pl.DataFrame(gaps, schema=GAP_SCHEMA).sort(["demand", "intent"], descending=[True, False])
    return CollectionPlan(collections, gap_table, excluded, len(candidates), len(merged))
