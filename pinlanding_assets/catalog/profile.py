"""A per-category profile of a catalog drop, computed on Spark: how many products each category has,
how long their titles are, how their images look (size, blur, blank) and which colour dominates.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from resources.tables import spark_table

PROFILE_SCHEMA = {
    "category": pl.Utf8, "products": pl.Int64, "mean_title_words": pl.Float64, "median_image_side": pl.Float64,
    "blurry_share": pl.Float64, "blank_share": pl.Float64, "top_colour": pl.Utf8, "top_colour_share": pl.Float64,
}
CATEGORY_COLUMNS = ("articleType", "category", "subCategory")


def category_column(ground_truth: pl.DataFrame) -> str | None:
    """The label column that best names a product's category, if the catalog has one."""
    return next((name for name in CATEGORY_COLUMNS if name in ground_truth.columns), None)


def profile_inputs(products: pl.DataFrame, features: pl.DataFrame, ground_truth: pl.DataFrame) -> pa.Table:
    """One flat row per product: the shape Spark gets, so Spark does the grouping work."""
    column = category_column(ground_truth)
    category = ground_truth.select("product_id", pl.col(column).alias("category")) if column else None
    frame = products.select(
        "product_id",
        pl.col("title").str.split(" ").list.len().cast(pl.Int32).alias("title_words"),
        pl.min_horizontal("image_width", "image_height").cast(pl.Float64).alias("image_side"),
    ).join(
        features.select(
            "product_id", "is_blurry", "is_blank",
            pl.col("dominant_colours").list.first().alias("first_colour"),
        ),
        on="product_id", how="left",
    )
    frame = frame.join(category, on="product_id", how="left") if category is not None else frame.with_columns(
        pl.lit(None, pl.Utf8).alias("category")
    )
    return spark_table(frame.with_columns(pl.col("category").fill_null("(unlabelled)").replace("", "(unlabelled)")))


def profile_with_spark(spark, rows: pa.Table) -> pl.DataFrame:
    """Group by category on Spark; the result is small and comes back as polars, sorted."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if rows.num_rows == 0:
        return pl.DataFrame(schema=PROFILE_SCHEMA)
    df = spark.createDataFrame(rows)
    stats = df.groupBy("category").agg(
        F.count("*").alias("products"),
        F.avg("title_words").alias("mean_title_words"),
        F.percentile_approx("image_side", 0.5).cast("double").alias("median_image_side"),
        F.avg(F.col("is_blurry").cast("double")).alias("blurry_share"),
        F.avg(F.col("is_blank").cast("double")).alias("blank_share"),
    )
    colours = (
        df.where(F.col("first_colour").isNotNull())
        .groupBy("category", "first_colour").count()
        .withColumn("rank", F.row_number().over(
            Window.partitionBy("category").orderBy(F.desc("count"), F.asc("first_colour"))))
        .where(F.col("rank") == 1)
        .select("category", F.col("first_colour").alias("top_colour"), F.col("count").alias("top_colour_count"))
    )
    result = (
        stats.join(colours, on="category", how="left")
        .withColumn("top_colour_share", F.col("top_colour_count") / F.col("products"))
        .drop("top_colour_count")
        .orderBy(F.desc("products"), F.asc("category"))
    )
    table = pa.Table.from_pandas(result.toPandas(), preserve_index=False)
    return pl.from_arrow(table).select(list(PROFILE_SCHEMA)).cast(PROFILE_SCHEMA).with_columns(
        pl.col("mean_title_words", "blurry_share", "blank_share", "top_colour_share").round(4)
    )
