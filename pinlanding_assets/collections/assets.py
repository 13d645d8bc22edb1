"""Collection assets, one partition per model release: topics with titles, their Spark feeds, the
search-log baseline and the comparison. Each reads only the drops scored with its own release."""

import json
import time

import dagster as dg
import numpy as np
import polars as pl
from dagster_pyspark import PySparkResource
from pydantic import Field

from pinlanding_assets.attributes.vocabulary import release_drops
from pinlanding_assets.automation import PUBLISH
from pinlanding_assets.collections.baseline import BaselineConfig, baseline_queries, nearest_products
from pinlanding_assets.collections.comparison import compare_systems
from pinlanding_assets.collections.feeds import FeedConfig, build_feeds, collection_members, read_feeds
from pinlanding_assets.collections.publish_scope import of_release, require_settled
from pinlanding_assets.collections.title_cache import CachedChat
from pinlanding_assets.collections.topics import TopicConfig, plan_collections
from pinlanding_assets.encoder.evaluation import ground_truth_attributes
from pinlanding_assets.metadata import histogram_markdown, table_preview
from pinlanding_assets.partitions import all_drops_in, catalog_drops, concat_partitions, model_releases
from pinlanding_assets.releases import drop_states
from pinlanding_assets.settings import QualityGates, load_settings
from resources.model_backends import ModelBackends
from resources.models import minilm_encoder

OWNERS = ["team:merchandising"]


def registered_drops(context) -> list[str]:
    return sorted(context.instance.get_dynamic_partitions(catalog_drops.name))


class CollectionsConfig(dg.Config):
    max_collections: int = Field(default_factory=lambda: load_settings().max_collections)
    max_attributes: int = 3
    duplicate_jaccard: float = 0.9
    max_over_assignment: float = 10.0


class FeedsConfig(dg.Config):
    attribute_partitions: int = 8


@dg.multi_asset(
    outs={
        "collections": dg.AssetOut(description="Collection topics (1-3 attributes), scored by demand and content, "
                                               "with LLM titles and stable slugs.", kinds={"polars", "parquet"},
                                   owners=OWNERS, automation_condition=PUBLISH),
        "demand_gaps": dg.AssetOut(description="Search intents with demand but no collection, and why.",
                                   kinds={"parquet"}, owners=OWNERS, automation_condition=PUBLISH),
        "publish_exclusions": dg.AssetOut(description="Drops the release does not publish (not scored with it), "
                                                      "with the reason.", kinds={"parquet"}, owners=OWNERS,
                                          automation_condition=PUBLISH),
    },
    ins={"attribute_assignments": all_drops_in(), "curated_vocabulary": dg.AssetIn(), "demand_intents": dg.AssetIn(),
         "raw_vlm_attributes": all_drops_in()},
    partitions_def=model_releases, group_name="collections",
)
def collections(context: dg.AssetExecutionContext, config: CollectionsConfig, models: ModelBackends,
                quality_gates: QualityGates,
                attribute_assignments: dict[str, pl.LazyFrame], curated_vocabulary: pl.DataFrame,
                demand_intents: pl.DataFrame, raw_vlm_attributes: dict[str, pl.DataFrame]):
    """Content-first topics: what the catalog can fill, ordered by what people search for. Titles of
    unchanged collections come from the title cache."""
    release = context.partition_key
    require_settled(release, drop_states(context.instance, release))
    assignments, excluded_drops = of_release(attribute_assignments, release, registered_drops(context))
    assignments = assignments.select("drop", "product_id", "attribute_id").collect()
    if excluded_drops.height:
        context.log.warning(f"release {release} leaves out {excluded_drops.height} drop(s): "
                            + "; ".join(f"{d}: {r}" for d, r in excluded_drops.iter_rows()))
    labelled = release_drops(curated_vocabulary)
    sampled = concat_partitions({d: f for d, f in raw_vlm_attributes.items() if d in labelled})["product_id"].n_unique()
    chat = CachedChat(load_settings().paths.title_cache, models.judge_llm, models.judge)
    started = time.perf_counter()
    plan = plan_collections(assignments, curated_vocabulary, demand_intents, sampled, chat, TopicConfig(
        min_products=quality_gates.min_feed_size, max_attributes=config.max_attributes,
        max_collections=config.max_collections, duplicate_jaccard=config.duplicate_jaccard,
        max_over_assignment=config.max_over_assignment), log=context.log.info)
    chat.save()
    table, gaps = plan.collections, plan.gaps
    context.log.info(f"{table.height} collections; titles: {chat.hits} from the cache, {chat.calls} LLM calls")
    sizes = table["facets"].list.len().value_counts().sort("facets")
    yield dg.Output(table, output_name="collections", metadata={
        "dagster/row_count": table.height,
        "candidate_topics": plan.candidates, "merged_near_duplicates": plan.merged,
        "excluded_attributes": dg.MetadataValue.json(plan.excluded),
        "by_number_of_attributes": dg.MetadataValue.json({str(k): v for k, v in sizes.iter_rows()}),
        "llm_titles": int((table["title_source"] == "llm").sum()),
        "template_titles": int((table["title_source"] == "template").sum()),
        "title_model": models.judge_llm,
        "title_llm_calls": chat.calls, "title_cache_hits": chat.hits,
        "drops_published": assignments["drop"].n_unique() if "drop" in assignments.columns else 0,
        "drops_left_out": excluded_drops.height,
        "seconds": round(time.perf_counter() - started, 1),
        "preview": table_preview(table, rows=30, columns=["rank", "title", "collection_id", "products", "demand",
                                                         "title_source", "intents"]),
    })
    yield dg.Output(gaps, output_name="demand_gaps", metadata={
        "dagster/row_count": gaps.height,
        "gap_demand": int(gaps["demand"].sum()),
        "reasons": table_preview(gaps.group_by("reason").agg(pl.col("demand").sum(), pl.len().alias("intents"))
                                 .sort("demand", descending=True), rows=15),
        "top_gaps": table_preview(gaps, rows=30),
    })
    yield dg.Output(excluded_drops, output_name="publish_exclusions", metadata={
        "dagster/row_count": excluded_drops.height, "release": release, "preview": table_preview(excluded_drops)})


@dg.asset(
    ins={"collections": dg.AssetIn(), "attribute_assignments": all_drops_in()},
    partitions_def=model_releases, group_name="collections", kinds={"spark", "parquet"}, owners=OWNERS,
    automation_condition=PUBLISH,
)
def collection_feeds(context: dg.AssetExecutionContext, config: FeedsConfig, pyspark: PySparkResource,
                     quality_gates: QualityGates, collections: pl.DataFrame,
                     attribute_assignments: dict[str, pl.LazyFrame]) -> dg.Output[pl.DataFrame]:
    """Ranked product feeds (Spark: rarest-attribute candidate join, never a cross join). The rows go to
    Parquet partitioned by anchor, one folder per release; this table says, per collection, whether it
    was published and why not."""
    spark = pyspark.spark_session
    release = context.partition_key
    settings = FeedConfig(min_feed_size=quality_gates.min_feed_size, max_feed_size=quality_gates.max_feed_size)
    _, excluded = of_release(attribute_assignments, release, registered_drops(context))
    drops = sorted(set(attribute_assignments) - set(excluded["drop"]))
    paths = load_settings().paths
    feed_rows = paths.feed_rows_dir(release)
    sources = [str(paths.partition_path("attribute_assignments", d)) for d in drops]
    context.log.info(f"Spark reads the assignments of {len(drops)} drop(s) scored with {release}")
    started = time.perf_counter()
    status = build_feeds(spark.read.parquet(*sources).select("product_id", "attribute_id", "score"), collections,
                         settings, feed_rows, config.attribute_partitions)
    seconds = time.perf_counter() - started
    published = status.filter(pl.col("status") == "published")
    context.log.info(f"{published.height} feeds published in {seconds:.0f}s")
    rows = read_feeds(feed_rows)
    return dg.Output(status, metadata={
        "dagster/row_count": status.height,
        "published": published.height, "dropped": status.height - published.height,
        "feed_rows": rows.height,
        "anchors": rows["anchor"].n_unique(),
        "feeds_path": dg.MetadataValue.path(str(feed_rows)),
        "spark_master": spark.sparkContext.master,
        "seconds": round(seconds, 1),
        "min_feed_size": settings.min_feed_size, "max_feed_size": settings.max_feed_size,
        "feed_size_histogram": histogram_markdown(published["products"], "feed sizes", "products per feed"),
        "relevance_histogram": histogram_markdown(rows["relevance"], "relevance of feed rows", "mean attribute score"),
        "dropped_collections": table_preview(status.filter(pl.col("status") == "dropped"), rows=20),
    })


@dg.asset_check(asset="collection_feeds", partitions_def=model_releases,
                description="Every published feed is within the size bounds.")
def feed_sizes_within_bounds(context: dg.AssetCheckExecutionContext, quality_gates: QualityGates,
                             collection_feeds: pl.DataFrame) -> dg.AssetCheckResult:
    """The bounds are the quality gates the feeds were built to (the same resource)."""
    release = context.partition_key
    low, high = quality_gates.min_feed_size, quality_gates.max_feed_size
    sizes = read_feeds(load_settings().paths.feed_rows_dir(release)).group_by("collection_id").len()
    published = collection_feeds.filter(pl.col("status") == "published")
    outside = sizes.filter((pl.col("len") < low) | (pl.col("len") > high))
    return dg.AssetCheckResult(
        passed=published.height > 0 and outside.is_empty() and sizes.height == published.height,
        metadata={"published": published.height, "feeds_on_disk": sizes.height, "outside_bounds": outside.height,
                  "min_feed_size": low, "max_feed_size": high},
    )


@dg.asset(
    ins={"demand_intents": dg.AssetIn(), "product_embeddings": all_drops_in(), "dual_encoder": dg.AssetIn(),
         "collection_feeds": dg.AssetIn()},
    partitions_def=model_releases, group_name="collections", kinds={"pytorch", "parquet"}, owners=OWNERS,
    automation_condition=PUBLISH,
)
def search_baseline(context: dg.AssetExecutionContext, quality_gates: QualityGates, demand_intents: pl.DataFrame,
                    product_embeddings: dict[str, pl.LazyFrame], dual_encoder: pl.DataFrame,
                    collection_feeds: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """The search-log way: as many collections as PinLanding published, taken from the top queries,
    each feed the products nearest to the query's embedding (same release's encoder and products)."""
    from pinlanding_assets.encoder.model import DualEncoder, spec_from_record  # torch: only when this asset runs

    record = dual_encoder.row(0, named=True)
    encoder = DualEncoder(spec_from_record(record), load_settings().paths.open_clip_cache)
    queries = baseline_queries(demand_intents, collection_feeds)
    settings = BaselineConfig(collections=queries.height, max_feed_size=quality_gates.max_feed_size)
    products, _ = of_release(product_embeddings, context.partition_key, registered_drops(context))
    products = products.select("product_id", "embedding").sort("product_id").collect()
    floor = float(np.mean(list(json.loads(record["thresholds"]).values())))
    feeds = nearest_products(encoder.encode_phrases(queries["query"].to_list()),
                             np.asarray(products["embedding"].to_list(), np.float32), products["product_id"].to_list(),
                             queries, floor, settings)
    sizes = feeds.group_by("collection_id").len()
    return dg.Output(feeds, metadata={
        "dagster/row_count": feeds.height, "queries": queries.height, "similarity_floor": round(floor, 4),
        "queries_with_min_products": int((sizes["len"] >= quality_gates.min_feed_size).sum()),
        "preview": table_preview(feeds.filter(pl.col("rank") <= 3), rows=30),
    })


@dg.asset(
    ins={"collections": dg.AssetIn(), "collection_feeds": dg.AssetIn(), "search_baseline": dg.AssetIn(),
         "demand_intents": dg.AssetIn(), "catalog_labels": all_drops_in(), "curated_vocabulary": dg.AssetIn()},
    partitions_def=model_releases, group_name="collections", kinds={"polars", "parquet"}, owners=OWNERS,
    automation_condition=PUBLISH,
)
def collection_comparison(context: dg.AssetExecutionContext, quality_gates: QualityGates, collections: pl.DataFrame,
                          collection_feeds: pl.DataFrame, search_baseline: pl.DataFrame,
                          demand_intents: pl.DataFrame, catalog_labels: dict[str, pl.DataFrame],
                          curated_vocabulary: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """PinLanding's claim, measured: content-first collections vs the search-log baseline on the same data."""
    truth = ground_truth_attributes(concat_partitions(catalog_labels), curated_vocabulary, minilm_encoder())
    feeds = read_feeds(load_settings().paths.feed_rows_dir(context.partition_key))
    members = collection_members(collections)
    table = compare_systems(collections, collection_feeds, feeds, search_baseline,
                            baseline_queries(demand_intents, collection_feeds), members, demand_intents, truth,
                            quality_gates.min_feed_size)
    content, baseline = table.drop("system").rows(named=True)
    return dg.Output(table, metadata={
        "dagster/row_count": table.height,
        "side_by_side": table_preview(table),
        "content_first": dg.MetadataValue.json(content),
        "search_log_baseline": dg.MetadataValue.json(baseline),
        "content_first_precision_at_10": content["precision_at_10"],
        "baseline_precision_at_10": baseline["precision_at_10"],
        "content_first_topic_coverage": content["collections_with_min_products"],
        "baseline_topic_coverage": baseline["collections_with_min_products"],
        "content_first_demand_covered": content["demand_covered"],
        "baseline_demand_covered": baseline["demand_covered"],
    })


@dg.asset_check(asset="collection_comparison", partitions_def=model_releases,
                description="Content-first precision@10 meets the floor and is not below the search-log baseline.")
def content_first_precision(quality_gates: QualityGates, collection_comparison: pl.DataFrame) -> dg.AssetCheckResult:
    figures = {r["system"]: r for r in collection_comparison.iter_rows(named=True)}
    content, baseline = figures["content_first"]["precision_at_10"], figures["search_log_baseline"]["precision_at_10"]
    return dg.AssetCheckResult(
        passed=content is not None and content >= quality_gates.min_precision_at_10
        and (baseline is None or content >= baseline),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"content_first": content, "baseline": baseline, "floor": quality_gates.min_precision_at_10},
    )
