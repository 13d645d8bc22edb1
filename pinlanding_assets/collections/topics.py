"""Collection topics: combinations of 1-3 attributes from different facets, scored by demand and content.

    attributes per product (from the assignments; with the release's reliability, only reliable
    attributes at or above their cut) -> every combination that contains an anchor facet (a category:
    "black dresses", not "black") with at most one attribute per facet -> products that carry all of it
    (content support) -> matching search intents (demand) -> score -> topics their own judged products
    contradict are dropped ("Formal Briefs") -> refinements that barely refine, or repeat the type's
    words, become aliases of their parent ("Women's Handbags" keeping 90% of "Handbags" is the same
    page; "Casual Casual Shoes" says nothing new) -> topics whose words make the same page name merge
    -> near-duplicates merged (product sets that overlap almost completely: keep the better topic)
    -> every topic left, up to a safety limit.

Attributes the encoder hands out far more often than the VLM ever said them (an over-assigned
attribute, e.g. a noisy "stole" pattern on a third of the catalog) are not used, with a reason.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from pinlanding_assets.collections.reliability import reliable_assignments
from pinlanding_assets.collections.titles import DEFERRED, slug_for, template_title, write_title
from pinlanding_assets.facets import NAME_ORDER, kept_vocabulary
from pinlanding_assets.progress import Progress


@dataclass(frozen=True)
class TopicConfig:
    min_products: int = 10
    max_attributes: int = 3
    anchor_facets: tuple[str, ...] = ("category",)
    max_collections: int = 5000  # a safety limit, not a target: every topic that passes the gates is kept
    duplicate_jaccard: float = 0.8
    max_over_assignment: float = 10.0
    max_refinement_share: float = 0.75  # a refinement keeping more of its parent's products is an alias of it
    min_page_estimate: float = 0.5  # a topic whose own judged products put an attribute under this is dropped


@dataclass
class Topic:
    attribute_ids: tuple[str, ...]
    size: int
    demand: int = 0
    exact_demand: int = 0
    intents: tuple[str, ...] = ()
    score: float = 0.0
    merged: tuple[str, ...] = ()
    aliases: tuple[tuple[str, ...], ...] = ()  # refinements and same-name topics this page stands for

    def absorb(self, other: Topic, as_alias: bool) -> None:
        """``other`` is served by this page: its searches count here, and its attributes are recorded."""
        self.merged = (*self.merged, "+".join(other.attribute_ids), *other.merged)
        self.aliases = (*self.aliases, *((other.attribute_ids,) if as_alias else ()), *other.aliases)
        self.demand += other.demand
        self.exact_demand += other.exact_demand


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
    return tuple(sorted(attribute_ids, key=lambda a: (NAME_ORDER.index(facets[a]), a)))


class ProductSets:
    """Which products carry each attribute, as sorted arrays of product indices (products in id order):
    a topic's products are the intersection of its attributes' arrays, computed when asked for."""

    def __init__(self, assignments: pl.DataFrame | pl.LazyFrame) -> None:
        pairs = assignments.lazy().select("product_id", "attribute_id").unique().with_columns(
            pl.col("product_id").rank("dense").cast(pl.Int32).sub(1).alias("index")).collect()
        self.product_ids = pairs.select("product_id", "index").unique().sort("index")["product_id"].to_list()
        grouped = pairs.group_by("attribute_id").agg(pl.col("index").sort())
        self._carriers = {a: np.asarray(i, np.int32) for a, i in zip(grouped["attribute_id"], grouped["index"])}
        self.pairs = pairs.select("index", "attribute_id")

    def carriers(self, attribute_id: str) -> np.ndarray:
        return self._carriers.get(attribute_id, np.zeros(0, np.int32))

    def members(self, attribute_ids) -> np.ndarray:
        """Sorted indices of the products carrying every attribute (smallest array first)."""
        arrays = sorted((self.carriers(a) for a in attribute_ids), key=len)
        if not arrays:
            return np.zeros(0, np.int32)
        result = arrays[0]
        for other in arrays[1:]:
            if not len(result):
                break
            found = np.searchsorted(other, result)
            result = result[(found < len(other)) & (other[np.minimum(found, len(other) - 1)] == result)]
        return result

    def ids(self, indices: np.ndarray) -> list[str]:
        return [self.product_ids[i] for i in indices.tolist()]


def candidate_topics(sets: ProductSets, facets: dict[str, str], excluded: set[str],
                     config: TopicConfig, chunk_products: int = 100_000) -> dict[tuple[str, ...], int]:
    """Topic -> number of products carrying all its attributes, for topics with an anchor, one attribute
    per facet, no phrase twice and at least ``min_products`` products.

    Counted level by level (Apriori): a combination is only counted when each of its smaller parts
    has the support, and products are processed in chunks, so the combinations of every product are
    never all in memory at once."""
    if not 1 <= config.max_attributes <= 3:
        raise ValueError(f"topics have 1 to 3 attributes, not {config.max_attributes}")
    # attributes, facets and phrases as integer codes: the joins below move 12-byte rows, not strings
    known = pl.DataFrame({"attribute_id": list(facets), "facet": list(facets.values())}).filter(
        ~pl.col("attribute_id").is_in(sorted(excluded))).sort("attribute_id").with_row_index("code").with_columns(
        pl.col("attribute_id").str.split_exact(":", 1).struct.field("field_1").rank("dense").cast(pl.UInt32)
        .alias("phrase"),
        pl.col("facet").rank("dense").cast(pl.UInt32).alias("facet_code"),
        pl.col("facet").is_in(list(config.anchor_facets)).alias("anchor"))
    names = known["attribute_id"].to_list()
    supported = sets.pairs.join(known.select("attribute_id", "code", "facet_code", "phrase", "anchor"),
                                on="attribute_id").drop("attribute_id").filter(
        pl.len().over("code") >= config.min_products)
    anchors = supported.filter(pl.col("anchor")).select("index", pl.col("code").alias("a0"), pl.col("phrase").alias("p0"))
    others = supported.filter(~pl.col("anchor")).select("index", pl.col("code").alias("a1"),
                                                         pl.col("facet_code").alias("f1"), pl.col("phrase").alias("p1"))
    counts: dict[tuple[int, ...], int] = {}
    singles = anchors.group_by("a0").len().filter(pl.col("len") >= config.min_products)
    counts.update({(a,): n for a, n in singles.iter_rows()})
    if config.max_attributes >= 2 and others.height:
        pairs = anchors.join(others, on="index").filter(pl.col("p0") != pl.col("p1"))
        frequent = pairs.group_by("a0", "a1").len().filter(pl.col("len") >= config.min_products)
        counts.update({(a0, a1): n for a0, a1, n in frequent.iter_rows()})
        if config.max_attributes == 3 and frequent.height:
            kept = pairs.join(frequent.select("a0", "a1"), on=["a0", "a1"]).select("index", "a0", "a1", "f1", "p1")
            running = pl.DataFrame(schema={"a0": pl.UInt32, "a1": pl.UInt32, "a2": pl.UInt32, "len": pl.UInt32})
            for start in range(0, len(sets.product_ids), chunk_products):
                chunk = kept.filter(pl.col("index").is_between(start, start + chunk_products - 1))
                triples = chunk.join(chunk.select("index", "a0", pl.col("a1").alias("a2"), pl.col("f1").alias("f2"),
                                                  pl.col("p1").alias("p2")), on=["index", "a0"]).filter(
                    (pl.col("f1") < pl.col("f2")) & (pl.col("p1") != pl.col("p2")))
                counted = triples.group_by("a0", "a1", "a2").len().cast({"len": pl.UInt32})
                running = pl.concat([running, counted]).group_by("a0", "a1", "a2").agg(
                    pl.col("len").sum().cast(pl.UInt32))
            frequent_triples = running.filter(pl.col("len") >= config.min_products)
            counts.update({(a0, a1, a2): n for a0, a1, a2, n in frequent_triples.iter_rows()})
    return {_order([names[c] for c in key], facets): n for key, n in counts.items()}


def attach_demand(topics: dict[tuple[str, ...], int], intents: pl.DataFrame) -> list[Topic]:
    """Demand = intents whose slots are exactly the topic's attributes (extra words allowed)."""
    by_set: dict[frozenset[str], list[tuple[str, int, bool]]] = defaultdict(list)
    for row in intents.filter(pl.col("parsed")).iter_rows(named=True):
        by_set[frozenset(row["attribute_ids"])].append((row["intent"], row["demand"], row["fully_parsed"]))
    result = []
    for key in sorted(topics):
        matches = sorted(by_set.get(frozenset(key), []), key=lambda m: (-m[1], m[0]))
        result.append(Topic(
            attribute_ids=key, size=topics[key],
            demand=sum(m[1] for m in matches), exact_demand=sum(m[1] for m in matches if m[2]),
            intents=tuple(m[0] for m in matches[:5]),
        ))
    return result


def score_topics(topics: list[Topic]) -> list[Topic]:
    """Demand first (log scale), content support as the tie-breaker in [0, 1]; sorted best first."""
    largest = max((t.size for t in topics), default=1)
    for topic in topics:
        topic.score = round(math.log1p(topic.demand) + math.log1p(topic.size) / math.log1p(largest), 6)
    return sorted(topics, key=lambda t: (-t.score, len(t.attribute_ids), t.attribute_ids))


class NearDuplicateIndex:
    """Sets kept so far, found again by Jaccard >= ``cut`` exactly, without comparing every pair. Two
    sets that similar have sizes within a factor ``cut`` of each other (sets are indexed by size band:
    only neighbouring bands are probed) and share an element among the first floor((1 - cut) * size) + 1
    of each, sorted (prefix filtering: each band indexes its sets by those prefixes)."""

    def __init__(self, cut: float) -> None:
        if not 0 < cut <= 1:
            raise ValueError(f"a near-duplicate Jaccard cut must be in (0, 1], not {cut}")
        self.cut = cut
        self.sets: list[np.ndarray] = []
        self._bands: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        self._step = math.log(1 / cut) if cut < 1 else None

    def _band(self, size: int) -> int:
        return int(math.log(max(size, 1)) / self._step) if self._step else size

    def _prefix(self, members: np.ndarray) -> list[int]:
        return members[: int((1 - self.cut) * len(members)) + 1].tolist()

    def find(self, members: np.ndarray) -> tuple[int, float] | None:
        """(position of the first kept set at least ``cut`` alike, its Jaccard), or None; sorted members."""
        size, band = len(members), self._band(len(members))
        near = (band - 1, band, band + 1) if self._step else (size,)
        prefix = self._prefix(members)
        seen = sorted({i for b in near if b in self._bands for p in prefix for i in self._bands[b].get(p, ())})
        for position in seen:
            other = self.sets[position]
            if not self.cut * size <= len(other) <= size / self.cut:
                continue
            shared = len(np.intersect1d(members, other, assume_unique=True))
            jaccard = shared / (size + len(other) - shared)
            if jaccard >= self.cut:
                return position, jaccard
        return None

    def add(self, members: np.ndarray) -> int:
        index = self._bands[self._band(len(members))]
        for p in self._prefix(members):
            index[p].append(len(self.sets))
        self.sets.append(members)
        return len(self.sets) - 1


def merge_near_duplicates(ranked: list[Topic], config: TopicConfig, sets: ProductSets,
                          limit: int | None = None) -> tuple[list[Topic], list[tuple[Topic, Topic]]]:
    """Walk best-first; a topic whose products overlap a kept one by Jaccard >= cut merges into the
    first such kept topic. With ``limit``, at most that many are kept and later topics only merge into
    them: the kept topics and what merges into them are the same as without the limit (a twin among
    the first ``limit`` kept always comes before any later one), at a fraction of the memory."""
    index = NearDuplicateIndex(config.duplicate_jaccard)
    kept: list[Topic] = []
    merged: list[tuple[Topic, Topic]] = []
    for topic in ranked:
        products = sets.members(topic.attribute_ids)
        found = index.find(products)
        if found is not None:
            twin = kept[found[0]]
            twin.absorb(topic, as_alias=False)
            merged.append((topic, twin))
            continue
        if limit is not None and len(kept) >= limit:
            continue
        index.add(products)
        kept.append(topic)
    return kept, merged


def contradicted_topics(ranked: list[Topic], sets: ProductSets, judged: pl.DataFrame, reliability: pl.DataFrame,
                        floor: float, prior_strength: float = 2.0) -> tuple[list[Topic], dict[tuple, str]]:
    """Topics whose own judged products say an attribute is wrong here ("formal" is right on shirts,
    but no judged brief is formal): per attribute, the agreement of the judged products on the page,
    pulled toward the attribute's estimated precision by ``prior_strength`` pseudo-products; a topic
    whose estimate for some attribute falls under ``floor`` is dropped, with the reason.
    judged: product_id, attribute_id, score, agrees (``reliability.judged_rows``)."""
    index = {p: i for i, p in enumerate(sets.product_ids)}
    prior = dict(reliability.filter(pl.col("reliable")).select("attribute_id", "estimated_precision").iter_rows())
    usable = reliable_assignments(judged, reliability).filter(pl.col("product_id").is_in(list(index)))
    evidence: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for (attribute_id,), part in usable.partition_by("attribute_id", as_dict=True).items():
        positions = np.asarray([index[p] for p in part["product_id"].to_list()], np.int64)
        order = np.argsort(positions)
        evidence[attribute_id] = (positions[order], part["agrees"].to_numpy()[order])
    kept, dropped = [], {}
    for topic in ranked:
        members = sets.members(topic.attribute_ids)
        reason = None
        for attribute_id in topic.attribute_ids:
            positions, agrees = evidence.get(attribute_id, (np.zeros(0, np.int64), np.zeros(0, bool)))
            on_page = np.isin(positions, members, assume_unique=True)
            judged_here, agreeing = int(on_page.sum()), int(agrees[on_page].sum())
            estimate = (agreeing + prior_strength * prior[attribute_id]) / (judged_here + prior_strength)
            if estimate < floor:
                reason = (f"{attribute_id}: {agreeing} of the {judged_here} judged products on this page agree "
                          f"(estimate {estimate:.2f} under {floor})")
                break
        if reason:
            dropped[topic.attribute_ids] = reason
        else:
            kept.append(topic)
    return kept, dropped


def _words_of(attribute_id: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", _phrase(attribute_id)))


def absorb_refinements(ranked: list[Topic], max_share: float) -> tuple[list[Topic], dict[tuple, tuple[Topic, str]]]:
    """A refinement adds one attribute to a parent topic (the same attributes less one, still with an
    anchor). It is informative only when that attribute removes a real share of the parent's products
    and says something the parent does not: one that keeps more than ``max_share`` of some parent (the
    attribute is nearly implied by it), or whose words the parent's phrases already hold ("casual" on
    "casual shoes"), becomes an alias of that parent (of the one it keeps most of), and the parent
    serves its searches. -> (topics left, best first; absorbed attribute ids -> (the page serving it,
    the reason))."""
    by_key = {t.attribute_ids: t for t in ranked}
    into: dict[tuple, tuple[tuple, float]] = {}
    for topic in sorted(ranked, key=lambda t: (len(t.attribute_ids), t.attribute_ids)):
        best = None
        for left_out in topic.attribute_ids if len(topic.attribute_ids) > 1 else ():
            parent = tuple(a for a in topic.attribute_ids if a != left_out)
            if parent in by_key and by_key[parent].size:
                share = topic.size / by_key[parent].size
                said = _words_of(left_out) <= set().union(*(_words_of(a) for a in parent))
                if (share > max_share or said) and (best is None or (said, share) > (best[2], best[1])):
                    best = (parent, share, said)
        if best:
            into[topic.attribute_ids] = best

    def serving(key: tuple) -> tuple:
        while key in into:
            key = into[key][0]
        return key

    absorbed = {}
    for key in sorted(into, key=lambda k: (-len(k), k)):  # deepest first, so aliases travel up whole
        parent, share, said = into[key]
        page = by_key[serving(key)]
        page.absorb(by_key[key], as_alias=True)
        absorbed[key] = (page, f"{'+'.join(parent)} already says it" if said else
                         f"keeps {share:.0%} of the products of {'+'.join(parent)}: not informative")
    return [t for t in ranked if t.attribute_ids not in into], absorbed


def merge_same_names(ranked: list[Topic], phrases: dict[str, str]) -> tuple[list[Topic], dict[tuple, tuple[Topic, str]]]:
    """Topics whose words make the same page name and slug ("party" as a style and as an occasion) are
    one page: the better-ranked one serves the others."""
    first: dict[str, Topic] = {}
    kept, merged = [], {}
    for topic in ranked:
        slug = slug_for([phrases[a] for a in topic.attribute_ids])
        if slug in first:
            first[slug].absorb(topic, as_alias=True)
            merged[topic.attribute_ids] = (first[slug], f"same page name as {'+'.join(first[slug].attribute_ids)}")
            continue
        first[slug] = topic
        kept.append(topic)
    return kept, merged


def visible_duplicates(feeds: pl.DataFrame, order: list[str], cut: float) -> dict[str, tuple[str, float]]:
    """Collections whose published feed shows nearly the same products as a better-ranked one:
    collection_id -> (the better one, Jaccard of the two feeds). feeds: collection_id, product_id;
    ``order``: collection ids best first (those without a feed are skipped)."""
    codes = {p: i for i, p in enumerate(sorted(feeds["product_id"].unique().to_list()))}
    by_collection = {c: np.asarray(sorted(codes[p] for p in products), np.int64) for c, products in
                     feeds.group_by("collection_id").agg(pl.col("product_id")).iter_rows()}
    index, kept, merged = NearDuplicateIndex(cut), [], {}
    for collection_id in order:
        members = by_collection.get(collection_id)
        if members is None or not len(members):
            continue
        found = index.find(members)
        if found is not None:
            merged[collection_id] = (kept[found[0]], round(found[1], 4))
            continue
        index.add(members)
        kept.append(collection_id)
    return merged


COLLECTION_SCHEMA = {
    "collection_id": pl.Utf8, "rank": pl.Int64, "title": pl.Utf8, "title_source": pl.Utf8, "title_reason": pl.Utf8,
    "description": pl.Utf8, "anchor": pl.Utf8, "attribute_ids": pl.List(pl.Utf8), "facets": pl.List(pl.Utf8),
    "phrases": pl.List(pl.Utf8), "products": pl.Int64, "demand": pl.Int64, "exact_demand": pl.Int64,
    "intents": pl.List(pl.Utf8), "score": pl.Float64, "merged_topics": pl.List(pl.Utf8), "aliases": pl.List(pl.Utf8),
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
    absorbed: dict[str, str]  # attribute ids ("+"-joined) -> the page serving them and why
    titles: dict[str, int]  # llm / template / deferred counts
    contradicted: dict[str, str]  # attribute ids ("+"-joined) -> why the page's own judged products reject it


def _gap_reason(row: dict, facets: dict[str, str], published: dict[frozenset, str],
                merged_into: dict[frozenset, str], excluded: dict[str, str], contradicted: dict[frozenset, str],
                sets: ProductSets, config: TopicConfig) -> str | None:
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
    left_out = sorted(a for a in attributes if a in excluded)
    if left_out:
        return f"{left_out[0]} is not used: {excluded[left_out[0]]}"
    support = len(sets.members(attributes))
    if support < config.min_products:
        return f"only {support} products carry it (minimum {config.min_products})"
    if attributes in contradicted:
        return f"contradicted: {contradicted[attributes]}"
    return f"over the safety limit of {config.max_collections} collections"


def _unused_attributes(assignments: pl.DataFrame, kept: pl.DataFrame, sampled_products: int, config: TopicConfig,
                       reliability: pl.DataFrame | None) -> dict[str, str]:
    """attribute_id -> why no collection uses it: unreliable (the release's estimate), over-assigned."""
    excluded = {}
    if reliability is not None:
        excluded = {a: f"unreliable: {r}" for a, r in reliability.filter(~pl.col("reliable")).select(
            "attribute_id", "reason").iter_rows()}
    for attribute_id, reason in over_assigned(assignments, kept, sampled_products, config.max_over_assignment).items():
        excluded.setdefault(attribute_id, reason)
    return excluded


def plan_collections(assignments: pl.DataFrame, vocabulary: pl.DataFrame, intents: pl.DataFrame,
                     sampled_products: int, chat, config: TopicConfig, reliability: pl.DataFrame | None = None,
                     judged: pl.DataFrame | None = None, log: Callable[[str], None] | None = None) -> CollectionPlan:
    """Candidate topics -> demand -> score -> aliases and merges -> every distinct topic (up to the
    safety limit) with a unique title; plus the gaps. With ``reliability`` (``estimate_reliability``),
    only reliable attributes at or above their cut define collections; ``assignments`` then needs
    ``score``; with ``judged`` too (``judged_rows``), a topic its own judged products contradict is
    dropped. ``chat`` answers None for a title it defers to a later publish (its budget is spent)."""
    kept = kept_vocabulary(vocabulary)
    facets = dict(zip(kept["attribute_id"], kept["facet"]))
    phrases = dict(zip(kept["attribute_id"], kept["phrase"]))
    excluded = _unused_attributes(assignments, kept, sampled_products, config, reliability)
    usable = assignments if reliability is None else reliable_assignments(assignments, reliability)
    sets = ProductSets(usable)
    candidates = candidate_topics(sets, facets, set(excluded), config)
    ranked = score_topics(attach_demand(candidates, intents))
    contradicted = {}
    if reliability is not None and judged is not None:
        ranked, contradicted = contradicted_topics(ranked, sets, judged, reliability, config.min_page_estimate)
    ranked, absorbed = absorb_refinements(ranked, config.max_refinement_share)
    ranked, same_name = merge_same_names(score_topics(ranked), phrases)
    chosen, merged = merge_near_duplicates(ranked, config, sets, limit=config.max_collections)
    chosen = chosen[: config.max_collections]
    if log:
        log(f"{len(candidates)} candidate topics -> {len(chosen)} collections ({len(absorbed)} refinements kept as "
            f"aliases, {len(same_name)} same-name and {len(merged)} near-duplicate topics merged, {len(contradicted)} "
            "contradicted by their own judged products); writing their titles")
    titled = Progress(log, "collection titles", len(chosen), unit="titles")
    pages: list[tuple[Topic, str, str, str | None]] = []
    by_title: dict[str, Topic] = {}
    sources = {"llm": 0, "template": 0, "deferred": 0}
    for topic in chosen:
        attributes = [(facets[a], phrases[a]) for a in topic.attribute_ids]
        title, source, reason = write_title(attributes, chat)
        if title.lower() in by_title:  # an LLM title another page has: this one says exactly what it holds
            taken_by = slug_for([phrases[a] for a in by_title[title.lower()].attribute_ids])
            title, source, reason = template_title(attributes), "template", f"LLM title taken by {taken_by}"
        if title.lower() in by_title:
            by_title[title.lower()].absorb(topic, as_alias=False)
            continue
        by_title[title.lower()] = topic
        sources["deferred" if reason == DEFERRED else source] += 1
        titled.add(1)
        pages.append((topic, title, source, reason))
    rows = []
    for rank, (topic, title, source, reason) in enumerate(pages, 1):
        attributes = [(facets[a], phrases[a]) for a in topic.attribute_ids]
        anchor = next(p for f, p in attributes if f in config.anchor_facets)
        rows.append({
            "collection_id": slug_for([p for _, p in attributes]), "rank": rank, "title": title,
            "title_source": source, "title_reason": reason,
            "description": f"{topic.size} products matching {', '.join(p for _, p in attributes)}, "
                           "ranked by how surely each one matches.",
            "anchor": slug_for([anchor]), "attribute_ids": list(topic.attribute_ids),
            "facets": [f for f, _ in attributes], "phrases": [p for _, p in attributes],
            "products": topic.size, "demand": topic.demand, "exact_demand": topic.exact_demand,
            "intents": list(topic.intents), "score": topic.score, "merged_topics": list(topic.merged),
            "aliases": [template_title([(facets[a], phrases[a]) for a in alias]) for alias in topic.aliases],
        })
    collections = pl.DataFrame(rows, schema=COLLECTION_SCHEMA)
    served = {frozenset(r["attribute_ids"]): r["collection_id"] for r in rows}
    merged_into = {frozenset(t.split("+")): r["collection_id"] for r in rows for t in r["merged_topics"]}
    contradicted_sets = {frozenset(k): why for k, why in contradicted.items()}
    gaps = []
    for row in intents.filter(pl.col("is_group_leader")).iter_rows(named=True):
        reason = _gap_reason(row, facets, served, merged_into, excluded, contradicted_sets, sets, config)
        if reason:
            gaps.append({"intent": row["intent"], "demand": row["group_demand"], "bucket": row["bucket"],
                         "attribute_ids": row["attribute_ids"], "remainder": row["remainder"], "reason": reason})
    gap_table = pl.DataFrame(gaps, schema=GAP_SCHEMA).sort(["demand", "intent"], descending=[True, False])
    absorbed_reasons = {"+".join(k): f"{served.get(frozenset(page.attribute_ids), '+'.join(page.attribute_ids))}: {why}"
                        for k, (page, why) in {**absorbed, **same_name}.items()}
    return CollectionPlan(collections, gap_table, excluded, len(candidates), len(merged), absorbed_reasons, sources,
                          {"+".join(k): why for k, why in contradicted.items()})
