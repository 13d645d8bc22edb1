"""Catalog stage figures on one real drop of the shared Fashion catalog (about 940 products):
validation, image evidence sequentially vs. on Ray Data (local, 2 CPUs), and the Spark profile.

    .venv/bin/python benchmarks/catalog_drop.py [--drops 4] [--drop drop-001]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import polars as pl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--drops", type=int, default=4)
    parser.add_argument("--drop", default="drop-001")
    parser.add_argument("--ray-cpus", type=int, default=2)
    args = parser.parse_args()

    import ray

    from pinlanding_assets.catalog.drops import split_fashion_catalog
    from pinlanding_assets.catalog.image_features import describe_batch, image_features_with_ray
    from pinlanding_assets.catalog.products import validate_catalog
    from pinlanding_assets.catalog.profile import profile_inputs, profile_with_spark
    from pinlanding_assets.settings import get_paths
    from resources.spark import spark_session

    landing = Path(tempfile.mkdtemp(prefix="pinlanding-bench-"))
    split_fashion_catalog(get_paths().fashion_catalog_dir, landing, n_drops=args.drops)

    started = time.perf_counter()
    tables = validate_catalog(args.drop, landing / args.drop)
    validate_s = time.perf_counter() - started
    products = tables.products
    inputs = products.select("product_id", "image_path").to_arrow()

    started = time.perf_counter()
    sequential = pl.from_arrow(describe_batch(inputs)).sort("product_id")
    sequential_s = time.perf_counter() - started

    ray.init(num_cpus=args.ray_cpus, include_dashboard=False)
    started = time.perf_counter()
    image_features_with_ray(inputs.slice(0, 64))  # warm the workers
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    parallel = pl.from_arrow(image_features_with_ray(inputs))
    ray_s = time.perf_counter() - started
    ray.shutdown()
    assert parallel.equals(sequential), "Ray and sequential evidence differ"

    session = spark_session()
    rows = profile_inputs(products, sequential, tables.ground_truth)
    profile_with_spark(session, rows)  # JVM warm-up
    started = time.perf_counter()
    profile = profile_with_spark(session, rows)
    spark_s = time.perf_counter() - started
    session.stop()

    n = products.height
    print(f"drop {args.drop}: {n} valid products, {tables.quarantine.height} quarantined")
    print(f"validate (read + decode check every image): {validate_s:.2f} s  ({n / validate_s:.0f} products/s)")
    print(f"image evidence, sequential loop:             {sequential_s:.2f} s  ({n / sequential_s:.0f} images/s)")
    print(f"image evidence, Ray Data ({args.ray_cpus} CPUs):         {ray_s:.2f} s  ({n / ray_s:.0f} images/s; "
          f"first small job incl. worker start {warm_s:.1f} s)")
    print(f"catalog profile on Spark local[2,4]:         {spark_s:.2f} s  ({profile.height} categories)")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
