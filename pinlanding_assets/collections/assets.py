"""Collection assets, one partition per model release: topics with titles, their Spark feeds, the
search-log baseline and the comparison. Each reads only the drops scored with its own release."""

import time
from collections import Counter

import dagster as dg
import numpy as np
import polars as pl
from dagster_pyspark import PySparkResource

from pinlanding_assets.attributes.vocabulary import release_drops
from pinlanding_assets.catalog.products import UNAVAILABLE, with_shop_columns
from pinlanding_assets.collections.audit import page_audit
from pinlanding_assets.collections.baseline import BaselineConfig, baseline_queries, nearest_products
from pinlanding_assets.collections.comparison import JUDGED_FACETS, compare_systems, estimated_vs_ground_truth
from pinlanding_assets.collections.feeds import (
    FeedConfig,
    build_feeds,
    collection_members,
    newest_assignments,
    read_feeds,
)
from pinlanding_assets.collections.overrides import Merchandising, override_problems, read_overrides
from pinlanding_assets.collections.publish_scope import of_release, require_settled
from pinlanding_assets.collections.reliability import (
    ReliabilityConfig,
    estimate_reliability,
    judged_rows,
    release_evidence,
)
from pinlanding_assets.collections.title_cache import CachedChat
from pinlanding_assets.collections.topics import TopicConfig, plan_collections
from pinlanding_assets.encoder.evaluation import ground_truth_attributes
from pinlanding_assets.encoder.records import EncoderRecord
from pinlanding_assets.facets import kept_vocabulary
from pinlanding_assets.metadata import histogram_markdown, table_preview
from pinlanding_assets.partitions import all_drops_in, concat_partitions, landed_drops, model_releases, superseded_rows
from pinlanding_assets.refresh.conditions import PUBLISH
from pinlanding_assets.refresh.releases import drop_states
from pinlanding_assets.settings import ProjectSettings, QualityGates, Settings, fill_unset
from resources.model_backends import ModelBackends
from resources.models import minilm_encoder

OWNERS = ["team:merchandising"]


class CollectionsConfig(dg.Config):
    """Unset fields take the project's settings (PINLANDING_MAX_COLLECTIONS)."""

    max_collections: int | None = None
    max_attributes: int = 3
    max_over_assignment: float = 10.0

    def resolved(self, project: Settings) -> "CollectionsConfig":
        return fill_unset(self, max_collections=project.max_collections)


merchandising_overrides = dg.AssetSpec(
    "merchandising_overrides", group_name="collections", kinds={"toml"}, owners=OWNERS,
    description="The merchandisers' reviewed file (data/merchandising.toml: pins, boosts, buries, exclusions, "
                "renames, blocks; README \"For retailers\"). Reported by overrides_sensor when it changes, so the "
                "release in service is published again with it.",
)


@dg.multi_asset(
    outs={
        "collections": dg.AssetOut(description="Collection topics (1-3 reliable attributes), scored by demand and "
                                               "content, distinct (refinements that barely refine are aliases, "
                                               "near-duplicates merged), with unique titles and stable slugs.",
                                   kinds={"polars", "parquet"}, owners=OWNERS, automation_condition=PUBLISH),
        "attribute_reliability": dg.AssetOut(
            description="Per attribute, its precision estimated on products training never saw (the attribute "
                        "stage's answers and the titles, never the catalog's labels), the score cut that reaches "
                        "the target precision and its score -> confidence map; unreliable ones with the reason.",
            kinds={"parquet"}, owners=OWNERS, automation_condition=PUBLISH),
        "demand_gaps": dg.AssetOut(description="Search intents with demand but no collection, and why.",
                                   kinds={"parquet"}, owners=OWNERS, automation_condition=PUBLISH),
        "publish_exclusions": dg.AssetOut(description="Drops the release does not publish (not scored with it), "
                                                      "with the reason.", kinds={"parquet"}, owners=OWNERS,
                                          automation_condition=PUBLISH),
    },
    ins={"attribute_assignments": all_drops_in(), "curated_vocabulary": dg.AssetIn(), "demand_intents": dg.AssetIn(),
         "raw_vlm_attributes": all_drops_in(), "catalog_products": all_drops_in(), "dual_encoder": dg.AssetIn()},
    partitions_def=model_releases, group_name="collections",
)
def collections(context: dg.AssetExecutionContext, config: CollectionsConfig, project: ProjectSettings,
                models: ModelBackends, quality_gates: QualityGates,
                attribute_assignments: dict[str, pl.LazyFrame], curated_vocabulary: pl.DataFrame,
                demand_intents: pl.DataFrame, raw_vlm_attributes: dict[str, pl.DataFrame],
                catalog_products: dict[str, pl.DataFrame], dual_encoder: pl.DataFrame):
    """Content-first topics: what the catalog can fill, with attributes it can trust, ordered by what
    people search for. Titles of unchanged collections come from the title cache."""
    release = context.partition_key
    config = config.resolved(project)
    gates = project.collections
    require_settled(release, drop_states(context.instance, release))
    landed = landed_drops(context.instance)
    assignments, excluded_drops = of_release(attribute_assignments, release, landed)
    assignments = assignments.select("drop", "product_id", "attribute_id", "score").collect()
    if excluded_drops.height:
        context.log.warning(f"release {release} leaves out {excluded_drops.height} drop(s): "
                            + "; ".join(f"{d}: {r}" for d, r in excluded_drops.iter_rows()))
    published_drops = sorted(assignments["drop"].unique().to_list())
    labelled = release_drops(curated_vocabulary)
    sampled = concat_partitions({d: f for d, f in raw_vlm_attributes.items() if d in labelled}, landed)["product_id"].n_unique()
    kept = kept_vocabulary(curated_vocabulary)
    seed = EncoderRecord.from_table(dual_encoder).spec.seed
    evidence, answered = release_evidence(
        concat_partitions({d: f for d, f in catalog_products.items() if d in published_drops}, landed).select(
            "product_id", "title"),
        concat_partitions(raw_vlm_attributes, landed), curated_vocabulary, seed)
    judged = judged_rows(assignments, evidence, answered, dict(zip(kept["attribute_id"], kept["facet"])))
    reliability, facet_reliability = estimate_reliability(
        assignments, judged, kept, ReliabilityConfig(target_precision=gates.target_precision))
    context.log.info(f"reliability: {int(reliability['reliable'].sum())} of {reliability.height} attributes reach the "
                     f"target precision {gates.target_precision} on {judged['product_id'].n_unique()} judged products")
    chat = CachedChat(project.paths.title_cache, models.judge_llm, models.judge, max_calls=gates.title_llm_calls)
    started = time.perf_counter()
    plan = plan_collections(assignments, curated_vocabulary, demand_intents, sampled, chat, TopicConfig(
        min_products=quality_gates.min_feed_size, max_attributes=config.max_attributes,
        max_collections=config.max_collections, duplicate_jaccard=gates.duplicate_jaccard,
        max_over_assignment=config.max_over_assignment, max_refinement_share=gates.max_refinement_share,
        min_page_estimate=gates.min_joint_confidence), reliability=reliability, judged=judged, log=context.log.info)
    chat.save()
    table, gaps = plan.collections, plan.gaps
    context.log.info(f"{table.height} collections; titles: {chat.hits} from the cache, {chat.calls} LLM calls, "
                     f"{chat.deferred} deferred to a later publish")
    if table.height >= config.max_collections:
        context.log.warning(f"the safety limit of {config.max_collections} collections was reached: topics past it "
                            "are not published (PINLANDING_MAX_COLLECTIONS)")
    sizes = table["facets"].list.len().value_counts().sort("facets")
    yield dg.Output(table, output_name="collections", metadata={
        "dagster/row_count": table.height,
        "candidate_topics": plan.candidates, "merged_near_duplicates": plan.merged,
        "refinements_and_same_names_as_aliases": len(plan.absorbed),
        "contradicted_by_their_judged_products": len(plan.contradicted),
        "contradicted_preview": dg.MetadataValue.json(dict(list(plan.contradicted.items())[:40])),
        "aliases_preview": dg.MetadataValue.json(dict(list(plan.absorbed.items())[:40])),
        "excluded_attributes": dg.MetadataValue.json(plan.excluded),
        "by_number_of_attributes": dg.MetadataValue.json({str(k): v for k, v in sizes.iter_rows()}),
        "llm_titles": plan.titles["llm"], "template_titles": plan.titles["template"],
        "deferred_llm_titles": plan.titles["deferred"],
        "title_model": models.judge_llm,
        "title_llm_calls": chat.calls, "title_cache_hits": chat.hits, "title_llm_call_budget": gates.title_llm_calls,
        "safety_limit": config.max_collections,
        "drops_published": len(published_drops),
        "drops_left_out": excluded_drops.height,
        "seconds": round(time.perf_counter() - started, 1),
        "preview": table_preview(table, rows=30, columns=["rank", "title", "collection_id", "products", "demand",
                                                         "title_source", "aliases"]),
    })
    yield dg.Output(reliability, output_name="attribute_reliability", metadata={
        "dagster/row_count": reliability.height,
        "reliable_attributes": int(reliability["reliable"].sum()),
        "target_precision": gates.target_precision,
        "judged_products": judged["product_id"].n_unique(),
        "per_facet": table_preview(facet_reliability, rows=10),
        "per_facet_estimated_precision": dg.MetadataValue.json(
            {f: p for f, p in facet_reliability.select("facet", "estimated_precision").iter_rows()}),
        "unreliable": table_preview(reliability.filter(~pl.col("reliable")), rows=40,
                                    columns=["attribute_id", "judged", "agreeing", "estimated_precision", "reason"]),
        "reliable": table_preview(reliability.filter(pl.col("reliable")), rows=60,
                                  columns=["attribute_id", "judged_above_cut", "estimated_precision", "lower_bound",
                                           "cut", "kept_products", "assigned"]),
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
    ins={"collections": dg.AssetIn(), "attribute_assignments": all_drops_in(), "attribute_reliability": dg.AssetIn(),
         "catalog_products": all_drops_in()},
    deps=[merchandising_overrides],
    partitions_def=model_releases, group_name="collections", kinds={"spark", "parquet"}, owners=OWNERS,
    automation_condition=PUBLISH,
)
def collection_feeds(context: dg.AssetExecutionContext, project: ProjectSettings, pyspark: PySparkResource,
                     quality_gates: QualityGates, collections: pl.DataFrame,
                     attribute_assignments: dict[str, pl.LazyFrame],
                     attribute_reliability: pl.DataFrame,
                     catalog_products: dict[str, pl.DataFrame]) -> dg.Output[pl.DataFrame]:
    """Ranked product feeds (Spark: rarest-attribute candidate join, never a cross join), ranked by the
    joint confidence of the collection's attributes and cut at its floor, then the merchandising
    overrides (each row says what moved it). The rows go to Parquet partitioned by anchor, one folder per
    release; this table says, per collection, whether it was published, dropped (too few products),
    merged (its feed nearly repeats a better page's) or blocked, and its title after renames."""
    spark = pyspark.spark_session
    release = context.partition_key
    gates = project.collections
    landed = landed_drops(context.instance)
    products = with_shop_columns(concat_partitions(catalog_products, landed))
    unavailable = products.filter(pl.col("availability").is_in(sorted(UNAVAILABLE)))["product_id"]
    overrides = read_overrides(project.paths.overrides_file)
    merchandising = Merchandising(overrides, frozenset(products["product_id"]), frozenset(unavailable),
                                  project.site.bury_out_of_stock)
    problems = override_problems(overrides, collections, merchandising.known_products)
    for problem in problems:
        context.log.warning(f"merchandising overrides: {problem}")
    feed_config = FeedConfig(min_feed_size=quality_gates.min_feed_size, max_feed_size=quality_gates.max_feed_size,
                             min_joint_confidence=gates.min_joint_confidence, duplicate_jaccard=gates.duplicate_jaccard)
    _, excluded = of_release(attribute_assignments, release, landed)
    drops = sorted(set(attribute_assignments) - set(excluded["drop"]))
    paths = project.paths
    feed_rows = paths.feed_rows_dir(release)
    sources = [str(paths.partition_path("attribute_assignments", d)) for d in drops]
    superseded = superseded_rows({d: attribute_assignments[d] for d in drops}, landed)
    context.log.info(f"Spark reads the assignments of {len(drops)} drop(s) scored with {release}; "
                     f"{superseded.height} product(s) of older drops are replaced by a newer drop's row")
    started = time.perf_counter()
    status = build_feeds(newest_assignments(spark, sources, superseded), collections,
                         feed_config, feed_rows,
                         calibration=attribute_reliability.filter(pl.col("reliable")), merchandising=merchandising)
    seconds = time.perf_counter() - started
    published = status.filter(pl.col("status") == "published")
    context.log.info(f"{published.height} feeds published in {seconds:.0f}s")
    rows = read_feeds(feed_rows)
    return dg.Output(status, metadata={
        "dagster/row_count": status.height,
        "published": published.height, "dropped": int((status["status"] == "dropped").sum()),
        "merged_near_duplicate_feeds": int((status["status"] == "merged").sum()),
        "min_joint_confidence": feed_config.min_joint_confidence, "duplicate_jaccard": feed_config.duplicate_jaccard,
        "feed_rows": rows.height, "superseded_products": superseded.height,
        "anchors": rows["anchor"].n_unique(),
        "feeds_path": dg.MetadataValue.path(str(feed_rows)),
        "spark_master": spark.sparkContext.master,
        "seconds": round(seconds, 1),
        "min_feed_size": feed_config.min_feed_size, "max_feed_size": feed_config.max_feed_size,
        "feed_size_histogram": histogram_markdown(published["products"], "feed sizes", "products per feed"),
        "relevance_histogram": histogram_markdown(rows["relevance"], "relevance of feed rows", "joint confidence"),
        "dropped_collections": table_preview(status.filter(pl.col("status") == "dropped"), rows=20),
        "merged_collections": table_preview(status.filter(pl.col("status") == "merged"), rows=20),
        "blocked_collections": table_preview(status.filter(pl.col("status") == "blocked"), rows=20),
        "overrides_file": dg.MetadataValue.path(str(paths.overrides_file)),
        "overridden_rows": int(rows["override"].is_not_null().sum()),
        "overrides_by_kind": dg.MetadataValue.json(dict(sorted(Counter(
            o.split(":")[0] if o.startswith("pin") else o for o in rows["override"].drop_nulls()).items()))),
        "override_problems": dg.MetadataValue.json(problems),
    })


@dg.asset_check(asset="collection_feeds", partitions_def=model_releases,
                description="Every published feed is within the size bounds.")
def feed_sizes_within_bounds(context: dg.AssetCheckExecutionContext, quality_gates: QualityGates,
                             project: ProjectSettings, collection_feeds: pl.DataFrame) -> dg.AssetCheckResult:
    """The bounds are the quality gates the feeds were built to (the same resource)."""
    release = context.partition_key
    low, high = quality_gates.min_feed_size, quality_gates.max_feed_size
    sizes = read_feeds(project.paths.feed_rows_dir(release)).group_by("collection_id").len()
    published = collection_feeds.filter(pl.col("status") == "published")
    outside = sizes.filter((pl.col("len") < low) | (pl.col("len") > high))
    return dg.AssetCheckResult(
        passed=published.height > 0 and outside.is_empty() and sizes.height == published.height,
        metadata={"published": published.height, "feeds_on_disk": sizes.height, "outside_bounds": outside.height,
                  "min_feed_size": low, "max_feed_size": high},
    )


@dg.asset_check(asset="collection_feeds", partitions_def=model_releases, blocking=True,
                additional_ins={"collections": dg.AssetIn()},
                description="The published pages are distinct: no shared title or attribute set, no feed that "
                            "repeats a better page's, no refinement that keeps nearly all of its parent.")
def distinct_pages(context: dg.AssetCheckExecutionContext, project: ProjectSettings, collections: pl.DataFrame,
                   collection_feeds: pl.DataFrame) -> dg.AssetCheckResult:
    """Blocking: duplicate pages compete for the same searches, so they never reach the site."""
    gates = project.collections
    feeds = read_feeds(project.paths.feed_rows_dir(context.partition_key))
    problems = page_audit(collections, collection_feeds, feeds, gates.duplicate_jaccard, gates.max_refinement_share)
    return dg.AssetCheckResult(
        passed=not any(problems.values()),
        metadata={**{name: len(found) for name, found in problems.items()},
                  "published_pages": int((collection_feeds["status"] == "published").sum()),
                  "problems": dg.MetadataValue.json({k: v[:20] for k, v in problems.items()}),
                  "duplicate_jaccard": gates.duplicate_jaccard, "max_refinement_share": gates.max_refinement_share},
    )


@dg.asset(
    ins={"demand_intents": dg.AssetIn(), "product_embeddings": all_drops_in(), "dual_encoder": dg.AssetIn(),
         "collection_feeds": dg.AssetIn()},
    partitions_def=model_releases, group_name="collections", kinds={"pytorch", "parquet"}, owners=OWNERS,
    automation_condition=PUBLISH,
)
def search_baseline(context: dg.AssetExecutionContext, quality_gates: QualityGates, project: ProjectSettings,
                    demand_intents: pl.DataFrame,
                    product_embeddings: dict[str, pl.LazyFrame], dual_encoder: pl.DataFrame,
                    collection_feeds: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """The search-log way: every query group with enough demand (PINLANDING_BASELINE_MIN_DEMAND distinct
    users) is a collection, its feed the products nearest to the query's embedding (same release's
    encoder and products)."""
    from pinlanding_assets.encoder.model import DualEncoder  # torch: only when this asset runs

    record = EncoderRecord.from_table(dual_encoder)
    encoder = DualEncoder(record.spec, project.paths.open_clip_cache)
    queries = baseline_queries(demand_intents, project.collections.baseline_min_demand)
    baseline_config = BaselineConfig(max_feed_size=quality_gates.max_feed_size)
    products, _ = of_release(product_embeddings, context.partition_key, landed_drops(context.instance))
    products = products.select("product_id", "embedding").sort("product_id").collect()
    floor = float(np.mean(list(record.thresholds.values())))
    feeds = nearest_products(encoder.encode_phrases(queries["query"].to_list()),
                             np.asarray(products["embedding"].to_list(), np.float32), products["product_id"].to_list(),
                             queries, floor, baseline_config)
    sizes = feeds.group_by("collection_id").len()
    return dg.Output(feeds, metadata={
        "dagster/row_count": feeds.height, "queries": queries.height, "similarity_floor": round(floor, 4),
        "queries_with_min_products": int((sizes["len"] >= quality_gates.min_feed_size).sum()),
        "preview": table_preview(feeds.filter(pl.col("rank") <= 3), rows=30),
    })


@dg.asset(
    ins={"collections": dg.AssetIn(), "collection_feeds": dg.AssetIn(), "search_baseline": dg.AssetIn(),
         "demand_intents": dg.AssetIn(), "catalog_ground_truth": all_drops_in(), "curated_vocabulary": dg.AssetIn(),
         "attribute_reliability": dg.AssetIn()},
    partitions_def=model_releases, group_name="collections", kinds={"polars", "parquet"}, owners=OWNERS,
    automation_condition=PUBLISH,
)
def collection_comparison(context: dg.AssetExecutionContext, quality_gates: QualityGates, project: ProjectSettings,
                          collections: pl.DataFrame,
                          collection_feeds: pl.DataFrame, search_baseline: pl.DataFrame,
                          demand_intents: pl.DataFrame, catalog_ground_truth: dict[str, pl.DataFrame],
                          curated_vocabulary: pl.DataFrame, attribute_reliability: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """PinLanding's claim, measured: content-first collections vs the search-log baseline on the same data."""
    truth = ground_truth_attributes(concat_partitions(catalog_ground_truth, landed_drops(context.instance)), curated_vocabulary,
                                    minilm_encoder())
    feeds = read_feeds(project.paths.feed_rows_dir(context.partition_key))
    members = collection_members(collections)
    kept = kept_vocabulary(curated_vocabulary)
    table = compare_systems(collections, collection_feeds, feeds, search_baseline,
                            baseline_queries(demand_intents, project.collections.baseline_min_demand), members,
                            demand_intents, truth, quality_gates.min_feed_size,
                            dict(zip(kept["attribute_id"], kept["facet"])))
    content, baseline = table.drop("system").rows(named=True)
    ratio = round(content["viable_topics"] / baseline["viable_topics"], 3) if baseline["viable_topics"] else None
    return dg.Output(table, metadata={
        "dagster/row_count": table.height,
        "side_by_side": table_preview(table),
        "content_first": dg.MetadataValue.json(content),
        "search_log_baseline": dg.MetadataValue.json(baseline),
        "content_first_precision_at_10": content["precision_at_10"],
        "baseline_precision_at_10": baseline["precision_at_10"],
        "content_first_viable_topics": content["viable_topics"],
        "baseline_viable_topics": baseline["viable_topics"],
        "viable_topics_ratio": ratio,
        "content_first_per_facet_agreement": dg.MetadataValue.json(
            {f: content[f"precision_at_10_{f}"] for f in JUDGED_FACETS}),
        "estimated_vs_ground_truth": table_preview(estimated_vs_ground_truth(attribute_reliability, content)),
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
