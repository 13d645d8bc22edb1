"""Catalog scale: assignments -> collections -> feeds -> pages for a synthetic catalog of N products
and M attributes, through the project's own assets, functions and engines, with time and memory per stage.

    .venv/bin/python benchmarks/catalog_scale.py --products 1000000 --attributes 10000 [--json]

Needs a warehouse from `make run` (the real distributions are read from it). What is synthetic:
- products: each copies a real product (uniformly drawn) and gets its vector plus Gaussian noise
  (per dimension 0.02, renormalised); it keeps that product's title and image (so at most as many
  distinct images as the real catalog has: thumbnails are made per image). Only the fused vector is
  written (the image-only and title-only columns are null: nothing past the embedding stage reads them);
- attributes: every kept real attribute is split into variants (M in all, in the real facet
  proportions) whose vectors are the real one plus noise (per dimension 0.03); variant 0 keeps the
  real id, so the real search intents still find their topics;
- thresholds: per variant, the score quantile on 4,096 synthetic products that gives the variant the
  real attribute's share of products divided among its variants (so a product carries as many
  attributes as a real one); exclusive facets (category, gender) take their top-1 as always;
- titles: the template titles (the LLM writes 150 a release in the demo, ~1 s each; 10,000 would
  take hours on 2 CPUs and are cached across releases);
- the search intents are the real ones (demand_intents of the newest release).

Stages: assignments = the `attribute_assignments` asset materialized by Dagster on its own partition
(Ray reads the embedding files, scores blocks, writes Parquet); bare GEMM = the same products x
attributes product in blocks, nothing else, in this process; collections = `plan_collections`
(product sets, Apriori topic counts, near-duplicate merge, gaps); feeds = `build_feeds` on local
Spark reading the assignments' Parquet; pages = `build_site` for the top collections (thumbnails as
Ray Data tasks, pages rendered by worker processes). Per stage: seconds, peak PSS of the process tree
(Python + Ray + JVM) and of this (the Dagster) process alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_memory import PeakMemory, own_mib  # noqa: E402

from pinlanding_assets.encoder.embeddings import PRODUCT_SCHEMA  # noqa: E402
from pinlanding_assets.encoder.model import EMBED_DIM  # noqa: E402
from pinlanding_assets.facets import EXCLUSIVE_FACETS  # noqa: E402
from pinlanding_assets.settings import get_paths  # noqa: E402

DROP, RELEASE, VERSION = "drop-scale", "r001", "synthetic"
CALIBRATION_PRODUCTS = 4096


def _scan(warehouse: Path, asset: str) -> pl.LazyFrame:
    parts = sorted((warehouse / asset).glob("*.parquet"))
    if not parts:
        raise SystemExit(f"no {asset} under {warehouse}: run `make run` first")
    return pl.concat([pl.scan_parquet(p) for p in parts], how="diagonal_relaxed")


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def real_inputs(warehouse: Path) -> dict:
    release = sorted(p.stem for p in (warehouse / "model_release").glob("*.parquet"))[-1]
    products = _scan(warehouse, "product_embeddings").select("product_id", "embedding").join(
        _scan(warehouse, "catalog_products").select("product_id", "title", "image_path"), on="product_id").sort(
        "product_id").collect()
    attributes = pl.read_parquet(warehouse / "attribute_embeddings" / f"{release}.parquet").sort("attribute_id")
    vocabulary = pl.read_parquet(warehouse / "curated_vocabulary" / f"{release}.parquet")
    assignments = _scan(warehouse, "attribute_assignments").select("product_id", "attribute_id").collect()
    shares = assignments.group_by("attribute_id").agg(
        (pl.col("product_id").n_unique() / assignments["product_id"].n_unique()).alias("share"))
    return {"products": products, "attributes": attributes.join(shares, on="attribute_id", how="left").with_columns(
        pl.col("share").fill_null(0.0)), "vocabulary": vocabulary,
        "intents": pl.read_parquet(warehouse / "demand_intents" / f"{release}.parquet")}


def synthetic_attributes(real: pl.DataFrame, count: int, rng: np.random.Generator) -> pl.DataFrame:
    """``count`` variants of the real attributes, in the real facet proportions."""
    variants = np.maximum(1, np.floor(np.full(real.height, count / real.height))).astype(int)
    variants[: count - variants.sum()] += 1
    vectors = np.asarray(real["embedding"].to_list(), np.float32)
    rows = []
    for j, row in enumerate(real.iter_rows(named=True)):
        noisy = _unit(vectors[j] + rng.normal(0, 0.03, size=(variants[j], EMBED_DIM)))
        noisy[0] = vectors[j]
        for v in range(variants[j]):
            rows.append({"attribute_id": row["attribute_id"] if v == 0 else f"{row['attribute_id']}~{v}",
                         "facet": row["facet"], "phrase": row["phrase"] if v == 0 else f"{row['phrase']} {v}",
                         "embedding": noisy[v].tolist(), "share": row["share"] / variants[j]})
    return pl.DataFrame(rows)


def write_products(real: pl.DataFrame, count: int, path: Path, rng: np.random.Generator,
                   rows_per_file: int = 65_536) -> np.ndarray:
    """The product_embeddings partition, file by file (bounded memory); returns each product's real source."""
    vectors = np.asarray(real["embedding"].to_list(), np.float32)
    sources = rng.integers(0, real.height, size=count)
    path.mkdir(parents=True)
    empty = pa.nulls(0, PRODUCT_SCHEMA.field("image_embedding").type)
    for part, start in enumerate(range(0, count, rows_per_file)):
        chunk = sources[start:start + rows_per_file]
        noisy = _unit(vectors[chunk] + rng.normal(0, 0.02, size=(len(chunk), EMBED_DIM)).astype(np.float32))
        flat = pa.FixedSizeListArray.from_arrays(pa.array(noisy.reshape(-1)), EMBED_DIM)
        nulls = pa.nulls(len(chunk), empty.type)
        table = pa.Table.from_arrays([
            pa.array([f"s{i:08d}" for i in range(start, start + len(chunk))]), flat, nulls, nulls,
            pa.array(np.ones(len(chunk), bool)), pa.array([VERSION] * len(chunk)), pa.array([RELEASE] * len(chunk))],
            schema=PRODUCT_SCHEMA)
        pq.write_table(table, path / f"part-{part:06d}.parquet")
    return sources


def thresholds_for(attributes: pl.DataFrame, real: pl.DataFrame, rng: np.random.Generator) -> dict[str, float]:
    """Per variant, the score quantile that gives it its share of products (see the module docstring)."""
    vectors = np.asarray(real["embedding"].to_list(), np.float32)
    sample = _unit(vectors[rng.integers(0, real.height, CALIBRATION_PRODUCTS)]
                   + rng.normal(0, 0.02, size=(CALIBRATION_PRODUCTS, EMBED_DIM)))
    scores = sample @ np.asarray(attributes["embedding"].to_list(), np.float32).T
    cuts = {}
    for j, row in enumerate(attributes.iter_rows(named=True)):
        share = min(max(row["share"], 1.0 / CALIBRATION_PRODUCTS), 1.0)
        cuts[row["attribute_id"]] = 1.0 if row["facet"] in EXCLUSIVE_FACETS else float(
            np.quantile(scores[:, j], 1.0 - share))
    return cuts


def bare_gemm_seconds(embeddings: Path, attributes: np.ndarray, block_rows: int) -> float:
    """The products x attributes GEMM alone, block by block, as the scorer computes it (torch, all CPUs)."""
    import torch

    torch.set_num_threads(os.cpu_count() or 2)
    right = torch.from_numpy(attributes).T.contiguous()
    seconds = 0.0
    for file in sorted(embeddings.glob("*.parquet")):
        reader = pq.ParquetFile(file)
        for batch in reader.iter_batches(batch_size=block_rows, columns=["embedding"]):
            vectors = batch.column(0).flatten().to_numpy().reshape(-1, EMBED_DIM)
            started = time.perf_counter()
            torch.from_numpy(vectors) @ right
            seconds += time.perf_counter() - started
    return seconds


def materialize_assignments(warehouse: Path, attributes: pl.DataFrame, thresholds: dict[str, float], cpus: int):
    """The real `attribute_assignments` asset on the synthetic drop, in this process, as Dagster runs it."""
    import dagster as dg

    from pinlanding_assets.encoder.assets import attribute_assignments
    from pinlanding_assets.partitions import catalog_drops, model_releases
    from resources.ray_pool import RayPool
    from resources.storage import parquet_io_manager

    attributes.select("attribute_id", "facet", "phrase", pl.col("embedding").cast(pl.Array(pl.Float32, EMBED_DIM)),
                      pl.lit(VERSION).alias("model_version")).write_parquet(
        _fresh(warehouse / "attribute_embeddings" / f"{RELEASE}.parquet"))
    pl.DataFrame([{"release": RELEASE, "version": VERSION, "thresholds": json.dumps(thresholds)}]).write_parquet(
        _fresh(warehouse / "dual_encoder" / f"{RELEASE}.parquet"))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("catalog_drops", [DROP])
    instance.add_dynamic_partitions("model_releases", [RELEASE])
    upstream = [dg.AssetSpec("product_embeddings", partitions_def=catalog_drops),
                dg.AssetSpec("attribute_embeddings", partitions_def=model_releases),
                dg.AssetSpec("dual_encoder", partitions_def=model_releases)]
    result = dg.materialize(
        [*upstream, attribute_assignments], partition_key=DROP, instance=instance, resources={
            "io_manager": parquet_io_manager(warehouse),
            "ray_pool": RayPool(ray_init_options={"num_cpus": cpus, "include_dashboard": False,
                                                  "ignore_reinit_error": True}),
        })
    [event] = [e for e in result.get_asset_materialization_events()
               if e.asset_key == dg.AssetKey("attribute_assignments")]
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def _fresh(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--attributes", type=int, default=10_000)
    parser.add_argument("--collections", type=int, default=10_000, help="collections kept, and pages made")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="last line: one JSON object with the figures")
    parser.add_argument("--assignments-only", action="store_true",
                        help="stop after the assignments stage (to compare the Dagster process at two sizes)")
    parser.add_argument("--keep", help="keep the work directory here (default: a temporary one, removed)")
    args = parser.parse_args()

    import ray

    from pinlanding_assets.collections.feeds import FeedConfig, build_feeds, read_feeds
    from pinlanding_assets.collections.topics import TopicConfig, plan_collections
    from pinlanding_assets.encoder.assets import ASSIGNMENT_BLOCK_ROWS
    from pinlanding_assets.site.pages import SiteConfig, build_site
    from pinlanding_assets.site.thumbnails import make_thumbnails_with_ray
    from resources.spark import spark_session

    rng = np.random.default_rng(args.seed)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pinlanding-scale-"))
    shutil.rmtree(work, ignore_errors=True)
    warehouse = work / "warehouse"
    real = real_inputs(get_paths().warehouse_dir)
    os.environ["PINLANDING_WAREHOUSE_DIR"] = str(warehouse)  # where the asset stages and publishes
    print(f"real inputs: {real['products'].height} products, {real['attributes'].height} attributes, "
          f"{real['intents'].height} intents", flush=True)
    started = time.perf_counter()
    attributes = synthetic_attributes(real["attributes"], args.attributes, rng)
    embeddings = warehouse / "product_embeddings" / f"{DROP}.parquet"
    sources = write_products(real["products"], args.products, embeddings, rng)
    thresholds = thresholds_for(attributes, real["products"], rng)
    print(f"synthetic catalog: {args.products:,} products x {attributes.height:,} attributes written in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    stages: dict[str, dict] = {}

    def stage(name: str, run, **extra) -> object:
        before = own_mib()
        began = time.perf_counter()
        with PeakMemory() as memory:
            value = run()
        stages[name] = {"seconds": round(time.perf_counter() - began, 1), "peak_rss_mib": round(memory.tree_peak_mib),
                        "dagster_process_before_mib": round(before),
                        "dagster_process_peak_mib": round(memory.own_peak_mib), **extra}
        print(f"{name}: {stages[name]}", flush=True)
        return value

    vectors = np.asarray(attributes["embedding"].to_list(), np.float32)
    gemm = bare_gemm_seconds(embeddings, vectors, ASSIGNMENT_BLOCK_ROWS)
    metadata = stage("assignments", lambda: materialize_assignments(warehouse, attributes, thresholds, args.cpus),
                     gemm_seconds=round(gemm, 1))
    stages["assignments"].update(rows=metadata["dagster/row_count"], quarantined=metadata["quarantined"],
                                 mean_attributes_per_product=metadata["mean_attributes_per_product"],
                                 over_gemm=round(stages["assignments"]["seconds"] / gemm, 2))
    ray.shutdown()
    assignments_path = warehouse / "attribute_assignments" / f"{DROP}.parquet"
    if args.assignments_only:
        return report(args, attributes, stages, work)

    vocabulary = attributes.select("attribute_id", "facet", "phrase").with_columns(
        pl.lit("keep").alias("decision"),
        (attributes["share"] * CALIBRATION_PRODUCTS).round().cast(pl.Int64).clip(1).alias("support"))

    def collections():
        rows = pl.scan_parquet(assignments_path).select("drop", "product_id", "attribute_id").collect()
        return plan_collections(rows, vocabulary, real["intents"], CALIBRATION_PRODUCTS, lambda *a, **k: "",
                                TopicConfig(min_products=10, max_collections=args.collections))

    plan = stage("collections", collections)
    stages["collections"].update(candidate_topics=plan.candidates, merged=plan.merged,
                                 collections=plan.collections.height)

    spark = spark_session(extra_conf={"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": "16",
                                      "spark.ui.showConsoleProgress": "false"})
    feeds_path = work / "feeds"
    status = stage("feeds", lambda: build_feeds(
        spark.read.parquet(str(assignments_path)).select("product_id", "attribute_id", "score"), plan.collections,
        FeedConfig(min_feed_size=10, max_feed_size=100, attribute_partitions=16), feeds_path))
    feeds = read_feeds(feeds_path)
    stages["feeds"].update(published=int((status["status"] == "published").sum()), feed_rows=feeds.height)
    spark.stop()

    shown = feeds.select("product_id").unique().with_columns(
        pl.col("product_id").str.slice(1).cast(pl.Int64).alias("index"))
    source = real["products"].select("title", "image_path").with_row_index("source")
    products = shown.with_columns(pl.Series("source", sources[shown["index"].to_numpy()], pl.UInt32)).join(
        source, on="source").select("product_id", "title", "image_path")
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    summary = stage("pages", lambda: build_site(plan.collections, feeds, products, work / "site",
                                                SiteConfig(release=RELEASE), make_thumbnails_with_ray,
                                                workers=args.cpus))
    stages["pages"].update(collection_pages=summary.collection_pages, thumbnails=summary.thumbnails)
    ray.shutdown()

    return report(args, attributes, stages, work)


def report(args, attributes: pl.DataFrame, stages: dict, work: Path) -> int:
    figures = {"products": args.products, "attributes": attributes.height, "cpus": args.cpus, "stages": stages}
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures) if args.json else json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
