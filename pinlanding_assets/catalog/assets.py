"""Catalog assets, one partition per drop: validated products (+ ground truth, + quarantine), image
evidence on Ray Data, and a per-category profile on Spark."""


import time

import dagster as dg
import polars as pl
from dagster_pyspark import PySparkResource

from pinlanding_assets.catalog.drops import drop_dir
from pinlanding_assets.catalog.image_features import image_features_with_ray
from pinlanding_assets.catalog.products import validate_catalog
from pinlanding_assets.catalog.profile import profile_inputs, profile_with_spark
from pinlanding_assets.metadata import table_preview
from pinlanding_assets.partitions import catalog_drops
from pinlanding_assets.progress import Progress
from pinlanding_assets.refresh.conditions import DROP_EAGER, NEW_DROP
from pinlanding_assets.settings import ProjectSettings
from resources.ray_pool import RayPool

OWNERS = ["team:catalog"]


@dg.multi_asset(
    outs={
        "catalog_products": dg.AssetOut(
            description="Valid products of a catalog drop: id, title, description, checked image path and size.",
            kinds={"polars", "parquet"}, owners=OWNERS, automation_condition=NEW_DROP,
        ),
        "catalog_quarantine": dg.AssetOut(
            description="Rows of a drop that failed validation, verbatim, each with its reason.",
            kinds={"polars", "parquet"}, owners=OWNERS, automation_condition=NEW_DROP,
        ),
        "catalog_ground_truth": dg.AssetOut(
            description="The ground truth of the drop (its label columns), kept apart: read by evaluation only.",
            kinds={"polars", "parquet"}, owners=OWNERS, automation_condition=NEW_DROP,
        ),
    },
    partitions_def=catalog_drops,
    group_name="catalog",
)
def catalog_products(context: dg.AssetExecutionContext, project: ProjectSettings):
    """Read the drop's product table (Fashion or generic layout) and validate every row and image."""
    drop = context.partition_key
    started = time.perf_counter()
    tables = validate_catalog(drop, drop_dir(project.paths.landing_dir, drop))
    total = tables.products.height + tables.quarantine.height
    context.log.info(f"{drop}: {total} rows validated in {time.perf_counter() - started:.1f}s, "
                     f"{tables.quarantine.height} quarantined")
    reasons = (
        tables.quarantine.with_columns(pl.col("reason").str.split(":").list.first().alias("kind"))
        .group_by("kind").len().sort(["len", "kind"], descending=[True, False])
    )
    yield dg.Output(tables.products, output_name="catalog_products", metadata={
        "dagster/row_count": tables.products.height,
        "rows_read": total,
        "quarantined": tables.quarantine.height,
        "quarantine_rate": round(tables.quarantine.height / total, 4) if total else 0.0,
        "layout": tables.layout,
        "source_table": dg.MetadataValue.path(str(tables.table_path)),
        "seconds": round(time.perf_counter() - started, 2),
        "preview": table_preview(tables.products, columns=["product_id", "title", "image_width", "image_height"]),
    })
    yield dg.Output(tables.quarantine, output_name="catalog_quarantine", metadata={
        "dagster/row_count": tables.quarantine.height,
        "reasons": table_preview(reasons, rows=20),
        "preview": table_preview(tables.quarantine, columns=["source_row", "product_id", "reason"]),
    })
    yield dg.Output(tables.ground_truth, output_name="catalog_ground_truth", metadata={
        "dagster/row_count": tables.ground_truth.height,
        "ground_truth_columns": dg.MetadataValue.json(tables.ground_truth.columns[1:]),
    })


@dg.asset(
    partitions_def=catalog_drops, group_name="catalog", kinds={"ray", "parquet"}, owners=OWNERS,
    automation_condition=DROP_EAGER,
)
def catalog_image_features(
    context: dg.AssetExecutionContext, ray_pool: RayPool, catalog_products: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """Decoded size, named dominant colours, blur and blank flags for every product image (Ray Data)."""
    started = time.perf_counter()
    progress = Progress(context.log.info, f"{context.partition_key} images described", catalog_products.height)
    features = pl.from_arrow(image_features_with_ray(catalog_products.select("product_id", "image_path").to_arrow(),
                                                     on_rows=progress.add))
    seconds = time.perf_counter() - started
    missing = set(catalog_products["product_id"]) - set(features["product_id"])
    if missing:
        raise RuntimeError(f"{len(missing)} products left the Ray job without a row, e.g. {sorted(missing)[:5]}")
    colours = (
        features.select(pl.col("dominant_colours").list.first().alias("colour"))
        .group_by("colour").len().sort(["len", "colour"], descending=[True, False])
    )
    return dg.Output(features, metadata={
        "dagster/row_count": features.height,
        "errors": int(features["error"].is_not_null().sum()),
        "blurry": int(features["is_blurry"].sum()),
        "blank": int(features["is_blank"].sum()),
        "images_per_second": round(features.height / seconds, 1) if seconds else 0.0,
        "ray_cluster": ray_pool.name,
        "dominant_colour_counts": table_preview(colours, rows=15),
        "preview": table_preview(features, columns=["product_id", "dominant_colours", "sharpness", "is_blank"]),
    })


@dg.asset(
    partitions_def=catalog_drops, group_name="catalog", kinds={"spark", "parquet"}, owners=OWNERS,
    automation_condition=DROP_EAGER,
)
def catalog_profile(
    pyspark: PySparkResource,
    catalog_products: pl.DataFrame,
    catalog_image_features: pl.DataFrame,
    catalog_ground_truth: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """Per-category counts, title length, image quality and top colour of a drop, grouped on Spark."""
    spark = pyspark.spark_session
    profile = profile_with_spark(spark, profile_inputs(catalog_products, catalog_image_features, catalog_ground_truth))
    return dg.Output(profile, metadata={
        "dagster/row_count": profile.height,
        "spark_master": spark.sparkContext.master,
        "preview": table_preview(profile, rows=15),
    })
