"""The gates a collection passes before it is published, each rule on a small synthetic catalog:
product types from titles, attribute reliability, informative refinements, one page per name, unique
titles, deferred LLM titles, the page audit, the search-log baseline's demand rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from pinlanding_assets.attributes.product_types import modifier_words, title_product_types
from pinlanding_assets.attributes.vocabulary import _with_product_types, _with_type_aliases
from pinlanding_assets.collections.audit import page_audit
from pinlanding_assets.collections.baseline import baseline_queries
from pinlanding_assets.collections.comparison import estimated_vs_ground_truth
from pinlanding_assets.collections.reliability import (
    ReliabilityConfig,
    calibrated_cut,
    estimate_reliability,
    judged_rows,
    platt,
    reliable_assignments,
    wilson_lower_bound,
)
from pinlanding_assets.collections.title_cache import CachedChat
from pinlanding_assets.collections.titles import DEFERRED
from pinlanding_assets.collections.topics import (
    ProductSets,
    Topic,
    TopicConfig,
    absorb_refinements,
    contradicted_topics,
    merge_same_names,
    plan_collections,
    visible_duplicates,
)


def _titles(counts: dict[str, int]) -> pl.DataFrame:
    rows = []
    for title, n in counts.items():
        rows += [{"product_id": f"{title}-{i:03d}", "title": title} for i in range(n)]
    return pl.DataFrame(rows)


def test_product_types_come_from_every_title() -> None:
    titles = _titles({"Puma Men Black Sports Shoes": 30, "Red Tape Men Brown Casual Shoes": 25, "Bata Men Shoes": 5,
                      "Mother Earth Women Pink Trousers": 24, "Locomotive Men Blue Jeans": 22,
                      "Avirate Women Black Dress": 40, "Titan Men Dial Watch": 21, "Fastrack Men Watch": 30})
    raw = pl.DataFrame({"product_id": ["x", "y", "z", "w", "v"],
                        "facet": ["colour", "colour", "colour", "occasion", "pattern"],
                        "value": ["black", "blue", "casual", "casual", "printed"]})
    modifiers = modifier_words(raw, None)
    assert "casual" not in modifiers, "one product's answer calling 'casual' a colour makes no modifier of it"
    assert {"pink", "navy", "women"} <= modifiers, "colours the image evidence names, audience words"
    types = title_product_types(titles, modifiers, min_products=20)
    assert {"sports shoes", "casual shoes", "trousers", "jeans", "dress", "watch"} <= set(types.types)
    assert "black dress" not in types.types, "a colour before the type is no type of its own"
    assert "shoes" in types.covered and "sports shoes" in types.covered["shoes"], "shoes is split into its types"
    assert types.aliases == {"dial watch": "watch"} and types.types["watch"] == 51
    assert types.rows.filter(pl.col("value") == "trousers").height == 24, "one row per product whose title names it"

    vlm = pl.DataFrame({"product_id": ["v1", "v2", "v3"], "facet": ["category", "category", "colour"],
                        "value": ["Shoes", "jeans", "black"]})
    combined, covered = _with_product_types(vlm, types)
    assert "Shoes" not in combined["value"].to_list(), "the attribute stage's covered phrase leaves the candidates"
    assert covered["phrase"].to_list() == ["shoes"] and covered["reason"][0].startswith("product type:")
    merged = pl.DataFrame({"facet": ["category", "colour"], "phrase": ["watch", "watch"], "aliases": [["watches"], []]})
    with_aliases = _with_type_aliases(merged, types.aliases)
    assert with_aliases["aliases"].to_list() == [["dial watch", "watches"], []]


def test_wilson_bound_and_cut_need_enough_agreeing_products() -> None:
    assert abs(float(wilson_lower_bound(9, 9, 1.0)) - 0.9) < 1e-12
    assert wilson_lower_bound(3, 3, 1.0) < 0.8, "three products cannot show 90% precision"
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4] + [0.3] * 4)
    agrees = np.array([True] * 6 + [False] * 4)
    config = ReliabilityConfig(target_precision=0.8, z=1.0)
    keep = calibrated_cut(scores, agrees, config)
    assert keep == 6 and scores[keep - 1] == 0.4, "the cut stops where the misses start"
    assert calibrated_cut(np.array([0.5, 0.5, 0.5]), np.array([True, True, False]), config) == 0
    nine = calibrated_cut(np.linspace(0.9, 0.5, 9), np.ones(9, bool), ReliabilityConfig(target_precision=0.9, z=1.0))
    assert nine == 9, "nine agreeing products of nine reach 0.9 exactly: rounding never refuses them"


def confidence(scores: np.ndarray, row: dict) -> np.ndarray:
    """The calibrated chance an attribute is right at these scores: the formula `feeds.calibrated` applies."""
    return 1 / (1 + np.exp(-(row["weight"] * (scores - row["score_mean"]) / row["score_scale"] + row["bias"])))


def test_confidence_rises_with_the_score_and_stays_uncertain_on_little_evidence() -> None:
    scores = np.linspace(0.1, 0.9, 40)
    agrees = scores > 0.4
    mean, scale, weight, bias = platt(scores, agrees, prior=0.5, strength=1.0)
    row = {"score_mean": mean, "score_scale": scale, "weight": weight, "bias": bias}
    low, high = confidence(np.array([0.2, 0.8]), row)
    assert weight > 0 and low < 0.3 and high > 0.9
    few = platt(np.array([0.6, 0.7]), np.array([True, True]), prior=0.5, strength=4.0)
    few_row = dict(zip(["score_mean", "score_scale", "weight", "bias"], few))
    assert confidence(np.array([0.7]), few_row)[0] < 0.8, "two agreeing products never make an attribute certain"


def _reliability_case() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Sixty products: "black" agrees with what titles say; "party" is handed out where the attribute
    stage said "casual"; "gold" is never said by anything the pipeline can read."""
    vocabulary = pl.DataFrame({
        "attribute_id": ["category:dress", "colour:black", "occasion:party", "occasion:casual", "colour:gold"],
        "facet": ["category", "colour", "occasion", "occasion", "colour"],
        "phrase": ["dress", "black", "party", "casual", "gold"]})
    rows, evidence = [], []
    for i in range(60):
        p = f"p{i:02d}"
        rows += [(p, "category:dress", 0.9), (p, "colour:black", 0.5 + i / 200), (p, "occasion:party", 0.6)]
        if i < 5:
            rows.append((p, "colour:gold", 0.7))
        evidence += [(p, "category:dress"), (p, "colour:black"), (p, "occasion:casual")]
    assignments = pl.DataFrame(rows, schema=["product_id", "attribute_id", "score"], orient="row")
    return assignments, pl.DataFrame(evidence, schema=["product_id", "attribute_id"], orient="row"), vocabulary


def test_unreliable_attributes_are_left_out_with_their_estimate() -> None:
    assignments, evidence, vocabulary = _reliability_case()
    facets = dict(zip(vocabulary["attribute_id"], vocabulary["facet"]))
    # the first 20 products were labelled by the attribute stage (judged on every facet); the rest only
    # by their titles, which name a category and a colour but no occasion
    labelled = {f"p{i:02d}" for i in range(20)}
    title_only = evidence.filter(~pl.col("attribute_id").str.starts_with("occasion") | pl.col("product_id").is_in(labelled))
    judged = judged_rows(assignments, title_only, labelled, facets)
    assert judged.filter(pl.col("attribute_id") == "occasion:party").height == 20, "titles say nothing of occasion"
    table, per_facet = estimate_reliability(assignments, judged, vocabulary, ReliabilityConfig(target_precision=0.9))
    rows = {r["attribute_id"]: r for r in table.iter_rows(named=True)}
    assert rows["category:dress"]["reliable"] and rows["colour:black"]["reliable"]
    party = rows["occasion:party"]
    assert not party["reliable"] and party["estimated_precision"] == 0.0 and "0 of 20 judged" in party["reason"]
    gold = rows["colour:gold"]
    assert not gold["reliable"] and gold["reason"].startswith("estimated precision 0.00")
    assert per_facet.filter(pl.col("facet") == "occasion")["reliable"].to_list() == [False]
    usable = reliable_assignments(assignments, table)
    assert set(usable["attribute_id"]) == {"category:dress", "colour:black"}


def test_an_implied_refinement_is_an_alias_and_an_informative_one_a_page() -> None:
    handbags = Topic(("category:handbag",), 100, demand=10)
    womens = Topic(("gender:women", "category:handbag"), 92, demand=4)  # keeps 92%: "women" is implied
    black = Topic(("colour:black", "category:handbag"), 30, demand=1)  # keeps 30%: informative
    black_womens = Topic(("gender:women", "colour:black", "category:handbag"), 29)  # keeps 97% of black
    kept, absorbed = absorb_refinements([handbags, womens, black, black_womens], max_share=0.75)
    assert kept == [handbags, black]
    assert handbags.demand == 14 and ("gender:women", "category:handbag") in handbags.aliases
    assert black.aliases == (("gender:women", "colour:black", "category:handbag"),)
    assert "keeps 92% of the products of category:handbag" in absorbed[womens.attribute_ids][1]


def test_an_attribute_the_type_already_names_is_no_refinement() -> None:
    shoes = Topic(("category:casual-shoes",), 100, demand=3)
    casual = Topic(("occasion:casual", "category:casual-shoes"), 40, demand=1)  # keeps 40%, but says nothing new
    kept, absorbed = absorb_refinements([shoes, casual], max_share=0.75)
    assert kept == [shoes] and shoes.demand == 4
    assert absorbed[casual.attribute_ids][1] == "category:casual-shoes already says it"


def test_a_slug_collision_is_one_page_never_a_suffix() -> None:
    party_style = Topic(("style:party", "category:dress"), 40, demand=5)
    party_occasion = Topic(("occasion:party", "category:dress"), 38, demand=2)
    phrases = {"style:party": "party", "occasion:party": "party", "category:dress": "dress"}
    kept, merged = merge_same_names([party_style, party_occasion], phrases)
    assert kept == [party_style] and party_style.demand == 7 and party_occasion.attribute_ids in merged


def _catalog() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    vocabulary = pl.DataFrame({
        "attribute_id": ["category:dress", "category:jeans", "colour:black", "colour:blue", "gender:women"],
        "facet": ["category", "category", "colour", "colour", "gender"],
        "phrase": ["dress", "jeans", "black", "blue", "women"], "decision": ["keep"] * 5, "support": [50] * 5})
    rows = []
    for i in range(40):
        rows += [(f"d{i:02d}", "category:dress"), (f"d{i:02d}", "gender:women"),
                 (f"d{i:02d}", "colour:black" if i < 15 else "colour:blue")]
        rows += [(f"j{i:02d}", "category:jeans"), (f"j{i:02d}", "colour:blue" if i < 12 else "colour:black")]
    assignments = pl.DataFrame(rows, schema=["product_id", "attribute_id"], orient="row").with_columns(
        pl.lit(0.5).alias("score"))
    intents = pl.DataFrame(schema={"intent": pl.Utf8, "demand": pl.Int64, "attribute_ids": pl.List(pl.Utf8),
                                   "parsed": pl.Boolean, "fully_parsed": pl.Boolean, "is_group_leader": pl.Boolean,
                                   "group_demand": pl.Int64, "bucket": pl.Utf8, "remainder": pl.Utf8})
    return assignments, vocabulary, intents


def test_titles_are_never_published_twice() -> None:
    assignments, vocabulary, intents = _catalog()
    same = json.dumps({"title": "Black Dresses"})  # an LLM that names everything alike
    plan = plan_collections(assignments, vocabulary, intents, 100, lambda *a, **k: same, TopicConfig(min_products=10))
    titles = plan.collections["title"].to_list()
    assert len(titles) == len(set(t.lower() for t in titles)) > 3
    assert "Women's Dresses" not in titles, "a 100% refinement (every dress is women's) is an alias, not a page"
    assert plan.collections["collection_id"].is_unique().all()


def test_llm_titles_past_the_budget_are_deferred(tmp_path: Path) -> None:
    class Counting:
        calls = 0

        def chat(self, messages, **kwargs):
            Counting.calls += 1
            return json.dumps({"title": "Blue Jeans"})

    assignments, vocabulary, intents = _catalog()
    chat = CachedChat(tmp_path / "titles.parquet", "m", Counting, max_calls=1)
    plan = plan_collections(assignments, vocabulary, intents, 100, chat, TopicConfig(min_products=10))
    assert Counting.calls == 1 and chat.deferred == plan.collections.height - 1 == plan.titles["deferred"]
    deferred = plan.collections.filter(pl.col("title_reason") == DEFERRED)
    assert deferred.height == plan.titles["deferred"] and set(deferred["title_source"]) == {"template"}


def test_the_audit_finds_duplicate_pages() -> None:
    collections = pl.DataFrame({
        "collection_id": ["dress", "black-dress", "dark-dress", "womens-dress"],
        "rank": [1, 2, 3, 4], "title": ["Dresses", "Black Dresses", "black dresses", "Women's Dresses"],
        "attribute_ids": [["category:dress"], ["colour:black", "category:dress"], ["colour:black", "category:dress"],
                          ["gender:women", "category:dress"]],
        "products": [100, 30, 30, 95]})
    status = collections.select("collection_id", pl.lit("published").alias("status"))
    feeds = pl.DataFrame([(c, f"p{i}") for c, n in [("dress", 20), ("black-dress", 12), ("dark-dress", 12),
                                                   ("womens-dress", 20)] for i in range(n)],
                         schema=["collection_id", "product_id"], orient="row")
    problems = page_audit(collections, status, feeds, duplicate_jaccard=0.8, max_refinement_share=0.75)
    assert problems["duplicate_titles"] == [["black-dress", "dark-dress"]]
    assert problems["duplicate_attribute_sets"] == [["black-dress", "dark-dress"]]
    assert {d["page"] for d in problems["near_duplicate_feeds"]} == {"dark-dress", "womens-dress"}
    assert problems["redundant_refinements"] == [{"page": "womens-dress", "parent": "dress", "share": 0.95}]
    assert visible_duplicates(feeds, ["womens-dress", "dress"], 0.8) == {"dress": ("womens-dress", 1.0)}


def test_the_baseline_takes_every_query_group_with_enough_demand() -> None:
    intents = pl.DataFrame({"intent": ["jeans", "black dress", "red hat", "t shirt", "t-shirt"],
                            "is_group_leader": [True, True, True, True, True], "group_demand": [9, 3, 1, 5, 4],
                            "group_key": ["a", "b", "c", "d", "e"], "attribute_ids": [[], [], [], [], []]})
    queries = baseline_queries(intents, min_demand=2)
    assert queries["query"].to_list() == ["jeans", "t shirt", "black dress"], "one page per name, demand >= 2"


def test_the_estimate_sits_beside_what_the_ground_truth_measures() -> None:
    assignments, evidence, vocabulary = _reliability_case()
    facets = dict(zip(vocabulary["attribute_id"], vocabulary["facet"]))
    judged = judged_rows(assignments, evidence, set(), facets)
    table, _ = estimate_reliability(assignments, judged, vocabulary, ReliabilityConfig(target_precision=0.9))
    side = estimated_vs_ground_truth(table, {"precision_at_10_colour": 0.8, "precision_at_10_category": 1.0})
    rows = {r["facet"]: r for r in side.iter_rows(named=True)}
    assert rows["colour"]["estimated_precision"] == 1.0 and rows["colour"]["ground_truth_top10"] == 0.8
    assert rows["occasion"]["reliable_attributes"] is None, "no reliable occasion attribute: no estimate"


def test_a_page_its_own_judged_products_contradict_is_dropped() -> None:
    rows, evidence = [], []
    for i in range(20):
        rows += [(f"s{i:02d}", "category:shirt", 0.9), (f"s{i:02d}", "occasion:formal", 0.6)]
        evidence += [(f"s{i:02d}", "occasion:formal"), (f"s{i:02d}", "category:shirt")]
    for i in range(10):
        rows += [(f"b{i:02d}", "category:briefs", 0.9), (f"b{i:02d}", "occasion:formal", 0.6)]
        if i < 4:  # the attribute stage labelled four briefs: casual, as briefs are
            evidence += [(f"b{i:02d}", "occasion:casual"), (f"b{i:02d}", "category:briefs")]
    assignments = pl.DataFrame(rows, schema=["product_id", "attribute_id", "score"], orient="row")
    vocabulary = pl.DataFrame({"attribute_id": ["category:shirt", "category:briefs", "occasion:formal",
                                                "occasion:casual"],
                               "facet": ["category", "category", "occasion", "occasion"],
                               "phrase": ["shirt", "briefs", "formal", "casual"]})
    facets = dict(zip(vocabulary["attribute_id"], vocabulary["facet"]))
    labelled = {f"b{i:02d}" for i in range(4)} | {f"s{i:02d}" for i in range(20)}
    judged = judged_rows(assignments, pl.DataFrame(evidence, schema=["product_id", "attribute_id"], orient="row"),
                         labelled, facets)
    reliability = pl.DataFrame({"attribute_id": list(facets), "reliable": [True] * 4,
                                "estimated_precision": [1.0, 1.0, 0.83, 1.0], "cut": [0.5] * 4})
    shirts = Topic(("occasion:formal", "category:shirt"), 20)
    briefs = Topic(("occasion:formal", "category:briefs"), 10)
    kept, dropped = contradicted_topics([shirts, briefs], ProductSets(assignments), judged, reliability, floor=0.5)
    assert kept == [shirts]
    assert dropped[briefs.attribute_ids].startswith("occasion:formal: 0 of the 4 judged products on this page agree")


def test_a_page_keeps_its_url_while_its_attributes_stay() -> None:
    """Products, demand and scores change between releases; the slug (the URL) follows the attribute set alone."""
    assignments, vocabulary, intents = _catalog()
    first = plan_collections(assignments, vocabulary, intents, 100, lambda *a, **k: json.dumps({"title": "Dresses"}),
                             TopicConfig(min_products=10)).collections
    fewer = intents.filter(~pl.col("intent").str.contains("black"))
    kept = assignments["product_id"].unique().sort()[::3]
    changed = assignments.filter(~pl.col("product_id").is_in(kept.to_list()))
    second = plan_collections(changed, vocabulary, fewer, 100, lambda *a, **k: json.dumps({"title": "Frocks"}),
                              TopicConfig(min_products=10)).collections
    key = lambda plan: dict(zip(plan["attribute_ids"].list.sort().list.join(","), plan["collection_id"]))  # noqa: E731
    assert not first.select("collection_id", "products").equals(second.select("collection_id", "products"))
    shared = set(key(first)) & set(key(second))
    assert len(shared) > 3 and all(key(first)[k] == key(second)[k] for k in shared)
