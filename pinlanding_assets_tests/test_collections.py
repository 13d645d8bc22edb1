"""Collections, their Spark feeds and the search-log baseline, on real catalog titles.

The assignments here are real: every product of the shared catalog with the vocabulary phrases its
title names, scored by MiniLM similarity between title and phrase (no VLM run needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pinlanding_assets.catalog.products import validate_catalog
from pinlanding_assets.collections.audit import page_audit
from pinlanding_assets.collections.baseline import baseline_queries
from pinlanding_assets.collections.comparison import evaluable_targets, precision_at_k
from pinlanding_assets.collections.feeds import (
    FeedBuildError,
    FeedConfig,
    build_feeds,
    collection_members,
    naive_feeds,
    newest_assignments,
    partitioned_feeds,
    read_feeds,
)
from pinlanding_assets.collections.overrides import Merchandising, Overrides
from pinlanding_assets.collections.reliability import ReliabilityConfig, estimate_reliability, judged_rows
from pinlanding_assets.collections.titles import slug_for, template_title, title_problem, write_title
from pinlanding_assets.collections.topics import (
    ProductSets,
    TopicConfig,
    candidate_topics,
    merge_near_duplicates,
    over_assigned,
    plan_collections,
)
from pinlanding_assets.demand.intents import DemandConfig, QueryParser, build_intents, read_search_log
from pinlanding_assets.encoder.pairs import HOLDOUT_SHARE, VALIDATION_SHARE, split_of, title_matches
from pinlanding_assets.facets import normalise_value
from pinlanding_assets.partitions import concat_partitions, superseded_rows
from pinlanding_assets.settings import get_paths
from pinlanding_assets_tests.fast.synthetic import every_combination
from pinlanding_assets_tests.vocabularies import fashion_vocabulary
from resources.model_backends import ModelBackends
from resources.models import FAST_LLM, minilm_encoder
from resources.spark import spark_session
from resources.tables import spark_table


@pytest.fixture(scope="module")
def vocabulary() -> pl.DataFrame:
    return fashion_vocabulary()


@pytest.fixture(scope="module")
def assignments(fashion_dir: Path, vocabulary: pl.DataFrame) -> pl.DataFrame:
    products = validate_catalog("full", fashion_dir).products
    pairs = title_matches(products, vocabulary).sort(["product_id", "attribute_id"])
    encode = minilm_encoder()
    titles = dict(zip(products["product_id"], encode(products["title"].to_list())))
    phrases = dict(zip(vocabulary["attribute_id"], encode(vocabulary["phrase"].to_list())))
    scores = [float(np.dot(titles[p], phrases[a])) for p, a in pairs.select("product_id", "attribute_id").iter_rows()]
    facets = dict(zip(vocabulary["attribute_id"], vocabulary["facet"]))
    return pairs.with_columns(pl.Series("score", scores, pl.Float32),
                              pl.col("attribute_id").replace_strict(facets).alias("facet"))


@pytest.fixture(scope="module")
def intents(vocabulary: pl.DataFrame) -> pl.DataFrame:
    log = read_search_log(get_paths().shared_query_counts)
    return build_intents(log, QueryParser.from_vocabulary(vocabulary, minilm_encoder(), DemandConfig()),
                         DemandConfig())[0]


@pytest.fixture(scope="module")
def chat():
    return ModelBackends(model_cache_dir=str(get_paths().model_cache_dir), judge_llm=FAST_LLM, llm_threads=2).judge().chat


@pytest.fixture(scope="module")
def spark():
    return spark_session()


def test_topics_follow_the_rules(assignments: pl.DataFrame, vocabulary: pl.DataFrame) -> None:
    facets = dict(zip(vocabulary["attribute_id"], vocabulary["facet"]))
    config = TopicConfig(min_products=10)
    sets = ProductSets(assignments)
    topics = candidate_topics(sets, facets, set(), config)
    assert len(topics) > 50
    assert topics == every_combination(assignments, facets, config), "level-wise counting misses nothing"
    assert candidate_topics(sets, facets, set(), config, chunk_products=1000) == topics, "whatever the chunk size"
    carriers = {a: set(g["product_id"]) for (a,), g in assignments.group_by(["attribute_id"])}
    for key, count in topics.items():
        named = [facets[a] for a in key]
        assert named.count("category") == 1 and len(set(named)) == len(named) <= 3
        members = set(sets.ids(sets.members(key)))
        assert members == set.intersection(*(carriers[a] for a in key)) and count == len(members) >= 10


def test_over_assigned_attributes_are_not_used(assignments: pl.DataFrame, vocabulary: pl.DataFrame) -> None:
    noisy = assignments.select("product_id").unique().with_columns(
        pl.lit("pattern:printed").alias("attribute_id"), pl.lit(0.4, pl.Float32).alias("score"))
    combined = pl.concat([assignments.select("product_id", "attribute_id", "score"), noisy]).unique()
    reasons = over_assigned(combined, vocabulary.with_columns(pl.lit(10).alias("support")), 200, 10.0)
    assert list(reasons) == ["pattern:printed"] and "over-assigned" in reasons["pattern:printed"]


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_prefix_filtered_merge_equals_comparing_every_pair(assignments, vocabulary, intents, cut: float) -> None:
    from pinlanding_assets.collections.topics import attach_demand, score_topics

    facets = dict(zip(vocabulary["attribute_id"], vocabulary["facet"]))
    sets = ProductSets(assignments)
    candidates = candidate_topics(sets, facets, set(), TopicConfig(min_products=5))
    config = TopicConfig(duplicate_jaccard=cut)
    kept, merged = merge_near_duplicates(score_topics(attach_demand(candidates, intents)), config, sets)
    members = {t: set(sets.members(t).tolist()) for t in candidates}
    expected_kept, expected_merged = [], []
    for topic in score_topics(attach_demand(candidates, intents)):
        twin = next((k for k in expected_kept if len(members[k] & members[topic.attribute_ids])
                     / len(members[k] | members[topic.attribute_ids]) >= cut), None)
        if twin is None:
            expected_kept.append(topic.attribute_ids)
        else:
            expected_merged.append((topic.attribute_ids, twin))
    assert [t.attribute_ids for t in kept] == expected_kept
    assert [(m.attribute_ids, twin.attribute_ids) for m, twin in merged] == expected_merged and expected_merged
    first, into_first = merge_near_duplicates(score_topics(attach_demand(candidates, intents)), config, sets, limit=20)
    assert [t.attribute_ids for t in first] == expected_kept[:20]
    assert [(m.attribute_ids, t.attribute_ids) for m, t in into_first] == [
        (m, t) for m, t in expected_merged if t in set(expected_kept[:20])]


def test_titles_are_checked_before_use(chat) -> None:
    attributes = [("gender", "women"), ("colour", "black"), ("category", "dress")]
    assert template_title(attributes) == "Women's Black Dresses"
    assert template_title([("category", "jeans")]) == "Jeans"
    assert title_problem("Women's Black Dresses", attributes) is None
    assert title_problem("Black Dresses", attributes) == "title leaves out women"
    assert title_problem("Women's Black Leather Dresses", attributes) == "title adds leather"
    assert title_problem("x" * 61, attributes) == "title too long"
    title, source, reason = write_title(attributes, chat)
    assert (source, reason) == ("llm", None) or (source == "template" and reason)
    assert title_problem(title, attributes) is None
    assert write_title(attributes, chat) == (title, source, reason), "greedy decoding with a fixed seed"
    assert write_title(attributes, lambda *a, **k: "Sure! Here is a title") == (
        "Women's Black Dresses", "template", "LLM answer was not JSON")


def test_plan_collections_with_titles_and_gaps(assignments, vocabulary, intents, chat) -> None:
    plan = plan_collections(assignments, vocabulary, intents, 200, chat, TopicConfig(max_collections=15))
    table = plan.collections
    assert table.height == 15 and table["collection_id"].n_unique() == 15
    assert table["collection_id"].str.contains(r"^[a-z0-9]+(-[a-z0-9]+)*$").all()
    assert table["rank"].to_list() == list(range(1, 16)) and (table["products"] >= 10).all()
    assert table["score"].to_list() == sorted(table["score"].to_list(), reverse=True)
    assert table.filter(pl.col("collection_id") == "dress").height == 1, "the most searched product type"
    reasons = dict(zip(plan.gaps["intent"], plan.gaps["reason"]))
    assert reasons["burlington coat factory"] == "no vocabulary attribute in the query"
    assert reasons["prom dresses"].startswith("'prom' is not in the vocabulary")
    assert not set(plan.gaps["intent"]) & {"dresses", "shoes"}, "covered intents are not gaps"
    again = plan_collections(assignments, vocabulary, intents, 200, chat, TopicConfig(max_collections=15))
    assert again.collections.equals(table) and again.gaps.equals(plan.gaps)


def _collections(assignments: pl.DataFrame, vocabulary: pl.DataFrame, count: int = 60) -> pl.DataFrame:
    facets = dict(zip(vocabulary["attribute_id"], vocabulary["facet"]))
    topics = sorted(candidate_topics(ProductSets(assignments), facets, set(), TopicConfig(min_products=5)).items(),
                    key=lambda kv: (-kv[1], kv[0]))[:count]
    return pl.DataFrame([{"collection_id": slug_for(list(key)), "rank": rank, "title": " ".join(key),
                          "anchor": key[-1].split(":")[1], "attribute_ids": list(key)}
                         for rank, (key, _) in enumerate(topics, 1)])


def _calibration(assignments: pl.DataFrame) -> pl.DataFrame:
    """A calibration as the reliability estimate writes one: every attribute but the rarest tenth, cut at
    its median score, confidence rising with the score around it."""
    stats = assignments.group_by("attribute_id").agg(pl.len().alias("n"), pl.col("score").median().alias("cut"),
                                                     pl.col("score").mean().alias("score_mean"))
    kept = stats.filter(pl.col("n") >= stats["n"].quantile(0.1)).sort("attribute_id")
    return kept.select("attribute_id", pl.col("cut").cast(pl.Float64), pl.col("score_mean").cast(pl.Float64),
                       pl.lit(0.05).alias("score_scale"), pl.lit(1.5).alias("weight"), pl.lit(1.0).alias("bias"))


@pytest.mark.parametrize("calibrated", [False, True])
def test_partitioned_join_equals_the_naive_cross_join(spark, assignments, vocabulary, calibrated: bool) -> None:
    collections = _collections(assignments, vocabulary)
    sdf = spark.createDataFrame(spark_table(assignments.select("product_id", "attribute_id", "score")))
    members = spark.createDataFrame(spark_table(collection_members(collections)))
    calibration = spark.createDataFrame(spark_table(_calibration(assignments))) if calibrated else None
    config = FeedConfig(min_feed_size=10, max_feed_size=50, min_joint_confidence=0.6 if calibrated else 0.0)
    fast = pl.from_pandas(partitioned_feeds(sdf, members, config, calibration=calibration).toPandas()).sort(
        ["collection_id", "rank"])
    slow = pl.from_pandas(naive_feeds(sdf, members, config, calibration).toPandas()).sort(["collection_id", "rank"])
    assert fast.height > (300 if calibrated else 1000) and fast.equals(slow)
    for _, feed in fast.group_by(["collection_id"]):
        relevance = feed.sort("rank")["relevance"].to_list()
        assert relevance == sorted(relevance, reverse=True) and feed.height <= 50
        assert min(relevance) >= config.min_joint_confidence
    if calibrated:
        cuts = dict(_calibration(assignments).select("attribute_id", "cut").iter_rows())
        shown = fast.join(collection_members(collections), on="collection_id").join(
            assignments.select("product_id", "attribute_id", "score"), on=["product_id", "attribute_id"])
        assert shown["attribute_id"].is_in(list(cuts)).all(), "unreliable attributes never define a feed"
        assert (shown["score"] >= shown["attribute_id"].replace_strict(cuts)).all(), "no product under a cut"


def test_short_feeds_are_dropped_and_publishing_is_repeatable(spark, assignments, vocabulary, tmp_path: Path) -> None:
    collections = _collections(assignments, vocabulary, count=1000)
    sdf = spark.createDataFrame(spark_table(assignments.select("product_id", "attribute_id", "score")))
    config = FeedConfig(min_feed_size=40, max_feed_size=60)
    target = tmp_path / "feeds"
    status = build_feeds(sdf, collections, config, target)
    dropped = status.filter(pl.col("status") == "dropped")
    assert dropped.height > 0 and dropped["reason"].str.contains("under the minimum of 40").all()
    rows = read_feeds(target)
    sizes = rows.group_by("collection_id").len()
    assert set(sizes["collection_id"]) == set(status.filter(pl.col("status") == "published")["collection_id"])
    assert sizes["len"].is_between(40, 60).all()
    assert {p.name.split("=")[1] for p in target.glob("anchor=*")} == set(rows["anchor"])
    assert build_feeds(sdf, collections, config, target).equals(status) and read_feeds(target).equals(rows)
    (target / "_SUCCESS").unlink()
    with pytest.raises(FileNotFoundError, match="no complete feeds"):
        read_feeds(target)


def test_merchandising_overrides_shape_the_published_feeds(spark, assignments, vocabulary, tmp_path: Path) -> None:
    collections = _collections(assignments, vocabulary, count=1000)
    sdf = spark.createDataFrame(spark_table(assignments.select("product_id", "attribute_id", "score")))
    config = FeedConfig(min_feed_size=40, max_feed_size=60)
    plain = read_feeds(_built(sdf, collections, config, tmp_path / "plain")[1])
    sizes = plain.group_by("collection_id").len().sort(["len", "collection_id"], descending=[True, False])
    top, other, third = sizes["collection_id"][:3]
    feed = plain.filter(pl.col("collection_id") == top)["product_id"].to_list()
    outsider = sorted(set(assignments["product_id"]) - set(feed))[0]
    overrides = Overrides.model_validate({"exclude": [feed[0]], "collections": {
        top: {"pin": {outsider: 1}, "bury": [feed[1]], "title": "Picked For You"}, other: {"block": True}}})
    merchandising = Merchandising(overrides, frozenset(assignments["product_id"]), frozenset(feed[2:4]))
    status, target = _built(sdf, collections, config, tmp_path / "merchandised", merchandising)
    rows = read_feeds(target)
    shaped = rows.filter(pl.col("collection_id") == top).sort("rank")
    assert shaped.height == 60 and shaped["product_id"][0] == outsider and shaped["override"][0] == "pin:1"
    assert feed[0] not in rows["product_id"].to_list(), "excluded everywhere"
    assert shaped["override"].to_list()[-3:] == ["bury", "bury:out_of_stock", "bury:out_of_stock"]
    assert shaped["product_id"].to_list()[-3:] == feed[1:4], "buried products keep their order, after the rest"
    assert shaped["product_id"].to_list()[1:-3] == [p for p in feed[4:] if p != outsider][:56], "the next ones move up"
    row = status.filter(pl.col("collection_id") == top)
    assert row["title"][0] == "Picked For You" and row["status"][0] == "published"
    blocked = status.filter(pl.col("collection_id") == other)
    assert blocked["status"][0] == "blocked" and other not in set(rows["collection_id"])
    assert rows.filter(pl.col("collection_id") == third)["override"].is_null().all(), "an untouched feed"


def _built(sdf, collections: pl.DataFrame, config: FeedConfig, target: Path, merchandising=None):
    return build_feeds(sdf, collections, config, target, merchandising=merchandising), target


def test_a_product_in_two_drops_counts_once_with_its_newest_row(spark, assignments, vocabulary, tmp_path: Path) -> None:
    """A retailer re-sends 100 products with changed data: the newer drop's rows replace the older ones
    (never both, which once made every attribute match twice and emptied the products from every feed)."""
    collections = _collections(assignments, vocabulary, count=200)
    ids = sorted(assignments["product_id"].unique())
    again = ids[:: len(ids) // 100][:100]
    older = assignments.with_columns(pl.lit("d1").alias("drop"))
    newer = (assignments.filter(pl.col("product_id").is_in(again)).with_columns(
        pl.lit("d2").alias("drop"), (pl.col("score") * 0.9).cast(pl.Float32).alias("score")))
    files = {"d1": tmp_path / "d1.parquet", "d2": tmp_path / "d2.parquet"}
    older.write_parquet(files["d1"])
    newer.write_parquet(files["d2"])
    superseded = superseded_rows({d: pl.scan_parquet(f) for d, f in files.items()}, ["d1", "d2"])
    assert superseded.height == len(again) == 100 and set(superseded["drop"]) == {"d1"}
    config = FeedConfig(min_feed_size=10, max_feed_size=100000)
    status = build_feeds(newest_assignments(spark, [str(f) for f in files.values()], superseded), collections,
                         config, tmp_path / "feeds")
    expected_rows = concat_partitions({"d1": older, "d2": newer}, ["d1", "d2"])
    assert expected_rows.filter(pl.col("product_id").is_in(again))["drop"].unique().to_list() == ["d2"]
    expected = build_feeds(spark.createDataFrame(spark_table(expected_rows.select("product_id", "attribute_id", "score"))),
                           collections, config, tmp_path / "expected")
    assert status.equals(expected) and read_feeds(tmp_path / "feeds").equals(read_feeds(tmp_path / "expected"))
    feeds = read_feeds(tmp_path / "feeds")
    build_feeds(spark.createDataFrame(spark_table(older.select("product_id", "attribute_id", "score"))), collections,
                config, tmp_path / "first")
    first = read_feeds(tmp_path / "first").filter(pl.col("product_id").is_in(again))
    shown = feeds.filter(pl.col("product_id").is_in(again))
    assert shown.height == first.height > 50, "every re-sent product stays on the feeds it was on"
    assert feeds.group_by("collection_id", "product_id").len()["len"].max() == 1


def _flaky(sdf, always: bool):
    """Fails a task on its first attempt (or always): what a lost executor looks like to the job."""
    from pyspark import TaskContext

    def run(batches):
        for batch in batches:
            if always or TaskContext.get().attemptNumber() == 0:
                raise RuntimeError("injected task failure")
            yield batch

    return sdf.repartition(2).mapInPandas(run, sdf.schema)


def test_task_failures_are_retried_or_fail_clearly(spark, assignments, vocabulary, tmp_path: Path) -> None:
    collections = _collections(assignments, vocabulary, count=10)
    sdf = spark.createDataFrame(spark_table(assignments.select("product_id", "attribute_id", "score")))
    config = FeedConfig(min_feed_size=10, max_feed_size=20)
    expected = build_feeds(sdf, collections, config, tmp_path / "clean")
    assert build_feeds(_flaky(sdf, always=False), collections, config, tmp_path / "retried").equals(expected)
    assert read_feeds(tmp_path / "retried").equals(read_feeds(tmp_path / "clean"))
    with pytest.raises(FeedBuildError, match="(?s)after retrying failed tasks.*injected task failure"):
        build_feeds(_flaky(sdf, always=True), collections, config, tmp_path / "broken")
    assert not (tmp_path / "broken").exists(), "nothing half-written is left looking complete"


def test_baseline_queries_and_precision(intents: pl.DataFrame) -> None:
    queries = baseline_queries(intents, 3)
    leaders = intents.filter(pl.col("is_group_leader") & (pl.col("group_demand") >= 3))
    assert 0 < queries.height <= leaders.height and queries["collection_id"].is_unique().all()
    assert queries["collection_id"].str.starts_with("q-").all() and (queries["group_demand"] >= 3).all()
    assert queries["group_demand"].to_list() == sorted(queries["group_demand"].to_list(), reverse=True)
    feeds = pl.DataFrame({"collection_id": ["c"] * 3, "rank": [1, 2, 3], "product_id": ["1", "2", "3"]})
    truth = pl.DataFrame({"product_id": ["1", "1", "2", "3"],
                          "attribute_id": ["category:dress", "colour:black", "category:dress", "category:jeans"]})
    members = pl.DataFrame({"collection_id": ["c", "c", "c"],
                            "attribute_id": ["category:dress", "colour:black", "pattern:striped"]})
    targets = evaluable_targets(members, truth)
    assert targets["attribute_id"].to_list() == ["category:dress", "colour:black"], "no label judges a pattern"
    precision = precision_at_k(feeds, targets, truth).row(0, named=True)
    assert (precision["evaluated"], precision["agreeing"]) == (3, 1)


def _similarity_assignments(products: pl.DataFrame, vocabulary: pl.DataFrame) -> pl.DataFrame:
    """What an encoder hands out, noisy as one: every product scored against every phrase by MiniLM
    (title vs phrase); top-1 for category and gender, a fixed cut for colour and pattern."""
    encode = minilm_encoder()
    scores = encode(products["title"].to_list()) @ encode(vocabulary["phrase"].to_list()).T
    ids, facets = vocabulary["attribute_id"].to_list(), vocabulary["facet"].to_list()
    rows = []
    for facet in sorted(set(facets)):
        columns = [j for j, f in enumerate(facets) if f == facet]
        block = scores[:, columns]
        if facet in ("category", "gender"):
            best = block.argmax(axis=1)
            picked = [(i, columns[b]) for i, b in enumerate(best)]
        else:
            picked = [(i, columns[j]) for i, j in zip(*np.nonzero(block >= 0.45))]
        product_ids = products["product_id"].to_list()
        rows += [(product_ids[int(i)], ids[int(j)], float(scores[i, j])) for i, j in picked]
    return pl.DataFrame(rows, schema=["product_id", "attribute_id", "score"], orient="row")


def test_collections_of_the_whole_catalog_are_distinct_and_cover_every_type(spark, fashion_dir: Path,
                                                                            vocabulary, intents, tmp_path) -> None:
    catalog = validate_catalog("full", fashion_dir)
    products = catalog.products
    assignments = _similarity_assignments(products, vocabulary)
    facets = dict(zip(vocabulary["attribute_id"], vocabulary["facet"]))
    unseen = products.filter(pl.col("product_id").map_elements(
        lambda p: split_of(p, 0, HOLDOUT_SHARE, VALIDATION_SHARE) != "train", return_dtype=pl.Boolean))
    judged = judged_rows(assignments, title_matches(unseen, vocabulary), set(), facets)
    reliability, _ = estimate_reliability(assignments, judged, vocabulary, ReliabilityConfig(target_precision=0.9))
    assert 0 < reliability["reliable"].sum() < reliability.height, "some attributes earn trust, some do not"
    # the hand-written vocabulary's support (10) is no attribute-stage sample: 10 sampled products keep the
    # over-assignment rule out of the way, so reliability alone decides
    plan = plan_collections(assignments, vocabulary, intents, 10, lambda *a, **k: None, TopicConfig(),
                            reliability=reliability)
    collections = plan.collections
    assert collections.height > 30 and collections["title"].str.to_lowercase().is_unique().all()
    assert set(collections["title_source"]) == {"template"}, "the chat deferred every LLM title"
    sdf = spark.createDataFrame(spark_table(assignments))
    status = build_feeds(sdf, collections, FeedConfig(min_joint_confidence=0.5), tmp_path / "feeds",
                         calibration=reliability.filter(pl.col("reliable")))
    feeds = read_feeds(tmp_path / "feeds")
    assert not any(page_audit(collections, status, feeds, 0.8, 0.75).values()), "every published page is distinct"

    # evaluation only: the catalog's labels judge whether every big product type the model can be trusted
    # on got a page of its own (MiniLM on titles confuses shirts and sweatshirts: those are left out, with
    # their estimate as the reason)
    types = catalog.ground_truth.group_by("articleType").len().filter(pl.col("len") >= 50)
    trusted = set(reliability.filter(pl.col("reliable"))["attribute_id"])
    assert reliability.filter(~pl.col("reliable"))["reason"].str.len_chars().min() > 20
    phrase_of = {p: a for p, a in zip(vocabulary["phrase"], vocabulary["attribute_id"]) if a in trusted}
    top10 = feeds.filter(pl.col("rank") <= 10).join(collections.select("collection_id", "attribute_ids"),
                                                    on="collection_id").join(
        catalog.ground_truth.select("product_id", "articleType"), on="product_id")
    missing, agreement = [], []
    for article_type in types["articleType"].to_list():
        attribute = phrase_of.get(normalise_value("category", article_type.lower()))
        if attribute is None:
            continue
        pages = top10.filter(pl.col("attribute_ids").list.contains(attribute)).group_by("collection_id").agg(
            (pl.col("articleType") == article_type).mean().alias("share"))
        if pages.is_empty():
            missing.append(article_type)
        else:
            agreement.append(pages["share"].max())
    assert not missing, f"product types with 50 products, a trusted attribute and no page: {missing}"
    # labels are noisy ("Flats" titles labelled Heels): judged over every type, not type by type
    assert len(agreement) >= 10 and sum(agreement) / len(agreement) >= 0.8, agreement
