"""Collections' pure logic: topics, merging, slugs, titles' cache, the baseline's ranking, the comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from pinlanding_assets.collections.baseline import BaselineConfig, nearest_products
from pinlanding_assets.collections.comparison import compare_systems
from pinlanding_assets.collections.titles import slug_for
from pinlanding_assets.collections.topics import (
    ProductSets,
    Topic,
    TopicConfig,
    candidate_topics,
    merge_near_duplicates,
)
from pinlanding_assets_tests.fast.synthetic import every_combination


def test_a_phrase_is_never_named_twice_in_a_topic() -> None:
    facets = {"category:shirt": "category", "style:casual": "style", "occasion:casual": "occasion",
              "colour:blue": "colour"}
    assignments = pl.DataFrame([{"product_id": f"p{i}", "attribute_id": a} for i in range(3) for a in facets])
    topics = candidate_topics(ProductSets(assignments), facets, set(), TopicConfig(min_products=2))
    named = {frozenset(t) for t in topics}
    assert {frozenset({"category:shirt", "colour:blue", "style:casual"}),
            frozenset({"category:shirt", "colour:blue", "occasion:casual"})} <= named
    assert not [t for t in named if {"style:casual", "occasion:casual"} <= t], "no Casual Casual Shirts"


def test_near_duplicates_merge_into_the_better_topic() -> None:
    carriers = {"category:dress": range(100), "gender:women": range(95), "colour:black": range(30)}
    sets = ProductSets(pl.DataFrame([{"product_id": f"p{i:03d}", "attribute_id": a}
                                     for a, products in carriers.items() for i in products]))
    dresses = Topic(("category:dress",), 100, demand=10)
    womens = Topic(("gender:women", "category:dress"), 95, demand=2)
    black = Topic(("colour:black", "category:dress"), 30)
    kept, merged = merge_near_duplicates([dresses, womens, black], TopicConfig(), sets)
    assert kept == [dresses, black] and dresses.merged == ("gender:women+category:dress",) and dresses.demand == 12


def test_slugs_are_safe_file_names() -> None:
    assert slug_for(["<script>alert(1)</script>", "../../etc"]) == "script-alert-1-script-etc"
    assert slug_for(["navy blue", "t-shirt"]) == "navy-blue-t-shirt"
    assert slug_for(["कुर्ता"]) == "collection"


def test_baseline_feeds_rank_by_similarity_above_the_floor() -> None:
    products = np.eye(4, dtype=np.float32)
    products[3] = products[0]  # a tie with product "a"
    queries = pl.DataFrame({"collection_id": ["q-x"], "query": ["x"]})
    query = np.asarray([[0.9, 0.3, 0.0, 0.0]], np.float32)
    feed = nearest_products(query, products, ["a", "b", "c", "d"], queries, 0.25, BaselineConfig(max_feed_size=10))
    assert feed["product_id"].to_list() == ["a", "d", "b"] and feed["rank"].to_list() == [1, 2, 3]


def test_title_cache_keeps_answers_per_model_and_attributes(tmp_path: Path) -> None:
    """The cache in front of the title LLM: a repeated prompt is answered from disk, another model or
    other attributes ask again, and the LLM is loaded only on the first miss."""
    from pinlanding_assets.collections.title_cache import CachedChat
    from pinlanding_assets.collections.titles import title_messages

    class Recorder:
        def __init__(self) -> None:
            self.prompts: list[str] = []

        def chat(self, messages, **kwargs) -> str:
            self.prompts.append(messages[-1]["content"])
            return '{"title": "Black Dresses"}'

    recorder, loads = Recorder(), []
    path = tmp_path / "cache" / "titles.parquet"
    chat = CachedChat(path, "model-a", lambda: loads.append(1) or recorder)
    black_dress = title_messages([("colour", "black"), ("category", "dress")])
    assert chat(black_dress, max_tokens=32) == '{"title": "Black Dresses"}'
    chat(black_dress, max_tokens=32)
    chat(title_messages([("colour", "red"), ("category", "dress")]), max_tokens=32)
    assert (chat.calls, chat.hits, len(loads)) == (2, 1, 1)
    chat.save()
    again = CachedChat(path, "model-a", lambda: loads.append(1) or recorder)
    again(black_dress, max_tokens=32)
    assert (again.calls, again.hits, len(loads)) == (0, 1, 1), "answered from disk without loading the LLM"
    other_model = CachedChat(path, "model-b", lambda: recorder)
    other_model(black_dress, max_tokens=32)
    assert other_model.calls == 1


def test_level_wise_topics_equal_every_combination_on_random_catalogs() -> None:
    rng = np.random.default_rng(3)
    facets = {**{f"category:c{i}": "category" for i in range(4)}, **{f"colour:k{i}": "colour" for i in range(4)},
              **{f"style:s{i}": "style" for i in range(3)}, "occasion:s0": "occasion", "pattern:p0": "pattern"}
    rows = []
    for product in range(400):
        rows.append((f"p{product:03d}", f"category:c{rng.integers(4)}"))
        rows += [(f"p{product:03d}", a) for a in facets if not a.startswith("category") and rng.random() < 0.3]
    assignments = pl.DataFrame(rows, schema=["product_id", "attribute_id"], orient="row")
    config = TopicConfig(min_products=8)
    sets = ProductSets(assignments)
    topics = candidate_topics(sets, facets, set(), config)
    assert len(topics) > 40 and topics == every_combination(assignments, facets, config)
    assert candidate_topics(sets, facets, set(), config, chunk_products=37) == topics
    assert any("colour:k1" in t for t in topics)
    without = {t: n for t, n in topics.items() if "colour:k1" not in t}
    assert candidate_topics(sets, facets, {"colour:k1"}, config) == without, "an excluded attribute is in no topic"


def test_comparison_counts_coverage_precision_and_demand() -> None:
    collections = pl.DataFrame({"collection_id": ["black-tees", "jeans"],
                                "attribute_ids": [["category:tee", "colour:black"], ["category:jeans"]],
                                "merged_topics": [["category:tee+colour:dark"], []]})
    status = pl.DataFrame({"collection_id": ["black-tees", "jeans"], "status": ["published", "dropped"],
                           "products": [3, 1]})
    feeds = pl.DataFrame({"collection_id": ["black-tees"] * 3, "rank": [1, 2, 3], "product_id": ["a", "b", "c"]})
    members = pl.DataFrame({"collection_id": ["black-tees", "black-tees", "jeans"],
                            "attribute_id": ["category:tee", "colour:black", "category:jeans"]})
    truth = pl.DataFrame({"product_id": ["a", "a", "b", "b", "c"],
                          "attribute_id": ["category:tee", "colour:black", "category:tee", "colour:white",
                                           "category:tee"]})
    intents = pl.DataFrame({"intent": ["black tee", "dark tee", "jeans", "red shoes"], "demand": [40, 10, 30, 20],
                            "fully_parsed": [True, True, True, False],
                            "attribute_ids": [["category:tee", "colour:black"], ["category:tee", "colour:dark"],
                                              ["category:jeans"], []],
                            "group_key": ["g1", "g2", "g3", "g4"]})
    baseline = pl.DataFrame({"collection_id": ["q1", "q2"], "attribute_ids": [["category:jeans"], []],
                             "group_key": ["g3", "g4"]})
    baseline_feeds = pl.DataFrame({"collection_id": ["q1"] * 3, "rank": [1, 2, 3], "product_id": ["a", "b", "c"]})
    table = compare_systems(collections, status, feeds, baseline_feeds, baseline, members, intents, truth,
                            min_feed_size=2)
    content, search = table.row(0, named=True), table.row(1, named=True)
    assert table["system"].to_list() == ["content_first", "search_log_baseline"]
    assert content["viable_topics"] == 1 and content["collections"] == 2
    assert content["precision_at_10"] == round(1 / 3, 4), "only a is a black tee"
    assert content["demand_covered"] == 0.5, "black tee and the merged dark tee: 50 of 100"
    assert search["viable_topics"] == 1 and search["demand_covered"] == 0.3
    assert search["precision_at_10"] is None, "no product is labelled jeans: nothing to judge"
