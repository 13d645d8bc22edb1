"""Collection feeds on Spark: which products belong on each collection page, and in what order.

Never a cross join of products x collections. Each collection is keyed by its rarest attribute
(fewest assigned products); the assignments, hash-partitioned by attribute, meet the small
(collection, rarest attribute) table broadcast to every partition, so only products that carry
the rarest attribute become candidates. A candidate is kept when it carries every attribute of
the collection; relevance is the mean of those attribute scores; ties go to the smaller product id.
Feeds shorter than the minimum are not published, each with its reason.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from resources.tables import replace_directory, spark_table

FEED_COLUMNS = ["anchor", "collection_id", "rank", "product_id", "relevance"]
STATUS_SCHEMA = {"collection_id": pl.Utf8, "title": pl.Utf8, "anchor": pl.Utf8, "products": pl.Int64,
                 "status": pl.Utf8, "reason": pl.Utf8}


class FeedBuildError(RuntimeError):
    """Spark could not build the feeds, even after retrying failed tasks."""


@dataclass(frozen=True)
class FeedConfig:
    min_feed_size: int = 10
    max_feed_size: int = 100


def collection_members(collections: pl.DataFrame) -> pl.DataFrame:
    """(collection_id, anchor, attribute_id): one row per attribute of each collection."""
    return collections.select("collection_id", "anchor", "attribute_ids").explode("attribute_ids").rename(
        {"attribute_ids": "attribute_id"}).sort(["collection_id", "attribute_id"])


def partitioned_feeds(assignments, members, config: FeedConfig, attribute_partitions: int = 8):
    """Spark DataFrame of ranked feed rows (see module docstring); assignments: product_id, attribute_id, score."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    assignments = assignments.select("product_id", "attribute_id", F.col("score").cast("double"))
    by_attribute = assignments.repartition(attribute_partitions, "attribute_id")
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
        "collection_id", "anchor", "product_id").agg(F.count("*").alias("matched"), F.avg("score").alias("relevance"))
    return _ranked(matched.join(size, "collection_id").where(F.col("matched") == F.col("needed")), config)


def naive_feeds(assignments, members, config: FeedConfig):
    """The reference the partitioned join must equal: every product against every collection."""
    from pyspark.sql import functions as F

    products = assignments.groupBy("product_id").agg(
        F.map_from_entries(F.collect_list(F.struct("attribute_id", F.col("score").cast("double")))).alias("scores"))
    wanted = members.groupBy("collection_id", "anchor").agg(F.collect_list("attribute_id").alias("attributes"))
    pairs = products.crossJoin(wanted).withColumn(
        "found", F.transform("attributes", lambda a: F.col("scores")[a]))
    complete = pairs.where(F.forall("found", lambda s: s.isNotNull()))
    scored = complete.withColumn(
        "relevance", F.aggregate("found", F.lit(0.0), lambda acc, s: acc + s) / F.size("found"))
    return _ranked(scored.select("collection_id", "anchor", "product_id", "relevance"), config)


def _ranked(scored, config: FeedConfig):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("collection_id").orderBy(F.desc("relevance"), F.asc("product_id"))
    return (scored.withColumn("relevance", F.round("relevance", 6)).withColumn("rank", F.row_number().over(order))
            .where(F.col("rank") <= config.max_feed_size).select(*FEED_COLUMNS))


def feed_sizes(feeds) -> pl.DataFrame:
    from pyspark.sql import functions as F

    rows = feeds.groupBy("collection_id").agg(F.count("*").alias("products")).collect()
    return pl.DataFrame([r.asDict() for r in rows], schema={"collection_id": pl.Utf8, "products": pl.Int64})


def write_feeds(feeds, keep: list[str], target: Path) -> None:
    """Parquet partitioned by anchor (the collection's category), one file per anchor, rows in
    (collection, rank) order; written beside the target and swapped in, so a failed job leaves the
    previous feeds, never half of new ones."""
    from pyspark.sql import functions as F

    staging = target.with_name(target.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    spark = feeds.sparkSession
    keep_df = spark.createDataFrame([(c,) for c in keep], "collection_id string")
    published = feeds.join(F.broadcast(keep_df), "collection_id").repartition("anchor").sortWithinPartitions(
        "collection_id", "rank")
    published.select(*FEED_COLUMNS).write.mode("overwrite").partitionBy("anchor").parquet(str(staging))
    replace_directory(staging, target)


def build_feeds(assignments, collections: pl.DataFrame, config: FeedConfig, target: Path,
                attribute_partitions: int = 8) -> pl.DataFrame:
    """Build, size-check and publish the feeds; returns per collection: products, status, reason.

    ``assignments`` is a Spark DataFrame (product_id, attribute_id, score). Spark retries failed tasks
    itself (spark.task.maxFailures); what it cannot recover from fails here, naming the cause."""
    spark = assignments.sparkSession
    if collections.is_empty():
        target.mkdir(parents=True, exist_ok=True)
        (target / "_SUCCESS").touch()
        return pl.DataFrame(schema=STATUS_SCHEMA)
    try:
        members = spark.createDataFrame(spark_table(collection_members(collections)))
        feeds = partitioned_feeds(assignments, members, config, attribute_partitions).cache()
        sizes = feed_sizes(feeds)
        status = collections.select("collection_id", "title", "anchor").join(
            sizes, on="collection_id", how="left").with_columns(pl.col("products").fill_null(0))
        short = pl.col("products") < config.min_feed_size
        status = status.with_columns(
            pl.when(short).then(pl.lit("dropped")).otherwise(pl.lit("published")).alias("status"),
            pl.when(short).then(pl.format("feed has {} products, under the minimum of {}", "products",
                                          pl.lit(config.min_feed_size))).alias("reason"),
        ).sort("collection_id").cast(STATUS_SCHEMA).select(list(STATUS_SCHEMA))
        write_feeds(feeds, status.filter(pl.col("status") == "published")["collection_id"].to_list(), target)
        feeds.unpersist()
    except Exception as error:
        raise FeedBuildError(f"Spark could not build the collection feeds after retrying failed tasks: "
                             f"{type(error).__name__}: {str(error)[:2000]}") from error
    return status


def read_feeds(path: Path) -> pl.DataFrame:
    """The published feeds, sorted; refuses a directory Spark did not finish writing."""
    if not (path / "_SUCCESS").is_file():
        raise FileNotFoundError(f"no complete feeds at {path}: materialize collection_feeds first")
    files = sorted(path.glob("anchor=*/*.parquet"))
    if not files:
        return pl.DataFrame(schema={"anchor": pl.Utf8, "collection_id": pl.Utf8, "rank": pl.Int32,
                                    "product_id": pl.Utf8, "relevance": pl.Float64})
    frame = pl.read_parquet(files, hive_partitioning=True)
    return frame.select(FEED_COLUMNS).sort(["collection_id", "rank"])
