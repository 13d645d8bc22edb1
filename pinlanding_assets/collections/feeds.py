"""Collection feeds on Spark: which products belong on each collection page, and in what order.

Never a cross join of products x collections. The assignments first meet the release's calibration
(a broadcast table, one row per reliable attribute: its cut and its score -> confidence map, see
``reliability.py``): unreliable attributes and scores under an attribute's cut drop out, the rest get
a confidence. Each collection is keyed by its rarest attribute (fewest assigned products); the
assignments, hash-partitioned by attribute, meet the small (collection, rarest attribute) table
broadcast to every partition, so only products that carry the rarest attribute become candidates. A
candidate is kept when it carries every attribute of the collection and its joint confidence (the
product of its attributes' confidences: the chance every attribute of the page is right) reaches the
floor; relevance is that joint confidence, ties go to the higher mean score, then the smaller product
id. Feeds shorter than the minimum are not published, and a feed that shows nearly the same products
as a better-ranked one (Jaccard of the published feeds) is merged into it, each with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

import polars as pl

from pinlanding_assets.collections.overrides import (
    Merchandising,
    Overrides,
    accepted_titles,
    apply_overrides,
    blocked_collections,
)
from pinlanding_assets.collections.topics import visible_duplicates
from resources.files import written_whole
from resources.tables import spark_table

FEED_SCHEMA = {"anchor": pl.Utf8, "collection_id": pl.Utf8, "rank": pl.Int32, "product_id": pl.Utf8,
               "relevance": pl.Float64, "override": pl.Utf8}  # override: what a merchandiser's decision did
FEED_COLUMNS = list(FEED_SCHEMA)
STATUS_SCHEMA = {"collection_id": pl.Utf8, "title": pl.Utf8, "anchor": pl.Utf8, "products": pl.Int64,
                 "status": pl.Utf8, "reason": pl.Utf8, "merged_into": pl.Utf8}
CALIBRATION_COLUMNS = ["attribute_id", "cut", "score_mean", "score_scale", "weight", "bias"]


class FeedBuildError(RuntimeError):
    """Spark could not build the feeds, even after retrying failed tasks."""


@dataclass(frozen=True)
class FeedConfig:
    min_feed_size: int = 10
    max_feed_size: int = 100
    min_joint_confidence: float = 0.0  # products under it never show (with a calibration)
    duplicate_jaccard: float = 0.8  # published feeds at least this alike are one page
    attribute_partitions: int = 8  # Spark partitions of the assignments, by attribute, for the candidate join


def collection_members(collections: pl.DataFrame) -> pl.DataFrame:
    """(collection_id, anchor, attribute_id): one row per attribute of each collection."""
    return collections.select("collection_id", "anchor", "attribute_ids").explode("attribute_ids").rename(
        {"attribute_ids": "attribute_id"}).sort(["collection_id", "attribute_id"])


def newest_assignments(spark, sources: list[str], superseded: pl.DataFrame):
    """The drops' assignment files as one Spark table, less the rows of products a newer drop replaces
    (``superseded``: drop, product_id), so a product scored in two drops counts once, with its newest row."""
    assignments = spark.read.parquet(*sources)
    if superseded.height:
        replaced = spark.createDataFrame(superseded.select("drop", "product_id").rows(), "drop string, product_id string")
        assignments = assignments.join(replaced.hint("broadcast"), on=["drop", "product_id"], how="left_anti")
    return assignments.select("product_id", "attribute_id", "score")


def calibrated(assignments, calibration):
    """product_id, attribute_id, score, confidence: with a calibration (a Spark DataFrame of
    ``CALIBRATION_COLUMNS``), only reliable attributes at or above their cut; without one, every
    assignment at confidence 1 (the feed is then ranked by mean score)."""
    from pyspark.sql import functions as F

    assignments = assignments.select("product_id", "attribute_id", F.col("score").cast("double"))
    if calibration is None:
        return assignments.withColumn("confidence", F.lit(1.0))
    joined = assignments.join(F.broadcast(calibration.select(*CALIBRATION_COLUMNS)), "attribute_id").where(
        F.col("score") >= F.col("cut"))
    logit = F.col("weight") * (F.col("score") - F.col("score_mean")) / F.col("score_scale") + F.col("bias")
    return joined.select("product_id", "attribute_id", "score", (1 / (1 + F.exp(-logit))).alias("confidence"))


def partitioned_feeds(assignments, members, config: FeedConfig, calibration=None):
    """Spark DataFrame of ranked feed rows (see module docstring); assignments: product_id, attribute_id, score."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    assignments = calibrated(assignments, calibration)
    by_attribute = assignments.repartition(config.attribute_partitions, "attribute_id")
    counts = assignments.groupBy("attribute_id").agg(F.count("*").alias("carriers"))
    keyed = members.join(counts, "attribute_id", "left").fillna(0, subset=["carriers"])
    size = members.groupBy("collection_id").agg(F.count("*").alias("needed"))
    rarest = (keyed.withColumn("pick", F.row_number().over(
        Window.partitionBy("collection_id").orderBy(F.asc("carriers"), F.asc("attribute_id"))))
        .where(F.col("pick") == 1).select("collection_id", "anchor", F.col("attribute_id").alias("rarest")))
    candidates = by_attribute.join(F.broadcast(rarest), by_attribute.attribute_id == rarest.rarest).select(
        "collection_id", "anchor", "product_id")
    needed = candidates.join(members.select("collection_id", "attribute_id"), "collection_id")
    matched = needed.join(assignments, ["product_id", "attribute_id"]).groupBy(
        "collection_id", "anchor", "product_id").agg(
        F.count("*").alias("matched"), F.exp(F.sum(F.log("confidence"))).alias("relevance"),
        F.avg("score").alias("mean_score"))
    return _ranked(matched.join(size, "collection_id").where(F.col("matched") == F.col("needed")), config)


def naive_feeds(assignments, members, config: FeedConfig, calibration=None):
    """The reference the partitioned join must equal: every product against every collection."""
    from pyspark.sql import functions as F

    assignments = calibrated(assignments, calibration)
    products = assignments.groupBy("product_id").agg(
        F.map_from_entries(F.collect_list(F.struct("attribute_id", F.struct("score", "confidence")))).alias("scores"))
    wanted = members.groupBy("collection_id", "anchor").agg(F.collect_list("attribute_id").alias("attributes"))
    pairs = products.crossJoin(wanted).withColumn(
        "found", F.transform("attributes", lambda a: F.col("scores")[a]))
    complete = pairs.where(F.forall("found", lambda s: s.isNotNull()))
    scored = complete.withColumn(
        "relevance", F.exp(F.aggregate("found", F.lit(0.0), lambda acc, s: acc + F.log(s["confidence"])))
    ).withColumn("mean_score", F.aggregate("found", F.lit(0.0), lambda acc, s: acc + s["score"]) / F.size("found"))
    return _ranked(scored.select("collection_id", "anchor", "product_id", "relevance", "mean_score"), config)


def _ranked(scored, config: FeedConfig):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    scored = scored.withColumn("relevance", F.round("relevance", 6)).withColumn("mean_score", F.round("mean_score", 6))
    order = Window.partitionBy("collection_id").orderBy(F.desc("relevance"), F.desc("mean_score"), F.asc("product_id"))
    return (scored.where(F.col("relevance") >= config.min_joint_confidence)
            .withColumn("rank", F.row_number().over(order))
            .where(F.col("rank") <= config.max_feed_size).select(*FEED_COLUMNS[:-1]))


def write_feeds(rows: pl.DataFrame, target: Path) -> None:
    """Parquet partitioned by anchor (the collection's category), one file per anchor, rows in
    (collection, rank) order; written beside the target and swapped in, so a failed build leaves the
    previous feeds, never half of new ones."""
    with written_whole(target, directory=True) as staging:
        for (anchor,), frame in rows.sort(["anchor", "collection_id", "rank"]).partition_by(
                "anchor", as_dict=True, maintain_order=True).items():
            folder = staging / f"anchor={quote(anchor, safe='')}"
            folder.mkdir()
            frame.select(FEED_COLUMNS).write_parquet(folder / "part-00000.parquet")
        (staging / "_SUCCESS").touch()


def build_feeds(assignments, collections: pl.DataFrame, config: FeedConfig, target: Path,
                calibration: pl.DataFrame | None = None,
                merchandising: Merchandising | None = None) -> pl.DataFrame:
    """Build, size-check, de-duplicate and publish the feeds; returns per collection: its title,
    products, status (published, dropped, merged, blocked), reason and the collection it was merged into.

    ``assignments`` is a Spark DataFrame (product_id, attribute_id, score); ``calibration`` the
    release's reliable attributes (``CALIBRATION_COLUMNS``), or None for uncalibrated feeds;
    ``merchandising`` the overrides to apply (see ``overrides``; none by default): Spark ranks twice the
    feed size so excluded and buried products leave room for the next ones. Collections are taken best first by
    their ``rank``. Spark retries failed tasks itself (spark.task.maxFailures); what it cannot recover
    from fails here, naming the cause."""
    spark = assignments.sparkSession
    if collections.is_empty():
        target.mkdir(parents=True, exist_ok=True)
        (target / "_SUCCESS").touch()
        return pl.DataFrame(schema=STATUS_SCHEMA)
    merchandising = merchandising or Merchandising(Overrides(), frozenset())
    candidates = replace(config, max_feed_size=2 * config.max_feed_size)
    try:
        members = spark.createDataFrame(spark_table(collection_members(collections)))
        table = None if calibration is None else spark.createDataFrame(spark_table(
            calibration.select(CALIBRATION_COLUMNS).cast({c: pl.Float64 for c in CALIBRATION_COLUMNS[1:]})))
        ranked = partitioned_feeds(assignments, members, candidates, table).toPandas()
    except Exception as error:
        raise FeedBuildError(f"Spark could not build the collection feeds after retrying failed tasks: "
                             f"{type(error).__name__}: {str(error)[:2000]}") from error
    rows = pl.from_pandas(ranked) if len(ranked) else pl.DataFrame(schema=FEED_SCHEMA)
    rows = rows.cast({k: v for k, v in FEED_SCHEMA.items() if k != "override"})
    rows = apply_overrides(rows, merchandising, config.max_feed_size).cast(FEED_SCHEMA)
    blocked = blocked_collections(merchandising.overrides)
    titles = accepted_titles(merchandising.overrides, collections)[0]
    sizes = rows.group_by("collection_id").len().rename({"len": "products"}).cast({"products": pl.Int64})
    status = collections.select("collection_id", "title", "anchor", "rank").join(
        sizes, on="collection_id", how="left").with_columns(
        pl.col("products").fill_null(0),
        pl.col("collection_id").replace_strict(titles, default=pl.col("title")).alias("title"))
    is_blocked = pl.col("collection_id").is_in(sorted(blocked))
    long_enough = status.filter((pl.col("products") >= config.min_feed_size) & ~is_blocked).sort("rank")[
        "collection_id"].to_list()
    twins = visible_duplicates(rows.filter(pl.col("collection_id").is_in(long_enough)), long_enough,
                               config.duplicate_jaccard)
    short = pl.col("products") < config.min_feed_size
    twin_of = pl.col("collection_id").replace_strict({c: t for c, (t, _) in twins.items()}, default=None)
    overlap = pl.col("collection_id").replace_strict({c: j for c, (_, j) in twins.items()}, default=None,
                                                     return_dtype=pl.Float64)
    status = status.with_columns(
        pl.when(is_blocked).then(pl.lit("blocked")).when(short).then(pl.lit("dropped"))
        .when(twin_of.is_not_null()).then(pl.lit("merged")).otherwise(pl.lit("published")).alias("status"),
        pl.when(is_blocked).then(pl.lit("blocked by the merchandising overrides"))
        .when(short).then(pl.format("feed has {} products, under the minimum of {}", "products",
                                    pl.lit(config.min_feed_size)))
        .when(twin_of.is_not_null()).then(pl.format("near-duplicate: its feed and {}'s overlap by Jaccard {}",
                                                    twin_of, overlap.round(3)))
        .alias("reason"),
        twin_of.alias("merged_into"),
    ).sort("collection_id").cast(STATUS_SCHEMA).select(list(STATUS_SCHEMA))
    published = status.filter(pl.col("status") == "published")["collection_id"].to_list()
    write_feeds(rows.filter(pl.col("collection_id").is_in(published)), target)
    return status


def read_feeds(path: Path) -> pl.DataFrame:
    """The published feeds, sorted; refuses a directory Spark did not finish writing."""
    if not (path / "_SUCCESS").is_file():
        raise FileNotFoundError(f"no complete feeds at {path}: materialize collection_feeds first")
    files = sorted(path.glob("anchor=*/*.parquet"))
    if not files:
        return pl.DataFrame(schema=FEED_SCHEMA)
    frame = pl.read_parquet(files, hive_partitioning=True)
    return frame.select(FEED_COLUMNS).sort(["collection_id", "rank"])
