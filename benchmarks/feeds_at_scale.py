"""Feed construction at scale on local Spark: the attribute-partitioned join against a naive cross join.

Assignments are synthesised from the real ones (``make run`` first): per facet, the real share of
products carrying each attribute and the real score distribution; categories are split into
``--category-variants`` look-alikes so that 10k distinct collections exist. Collections are
attribute combinations (a category plus 0-2 other facets) drawn from synthetic products, as
``collections`` would find them.

    .venv/bin/python benchmarks/feeds_at_scale.py                       # 1M products x 10k collections
    .venv/bin/python benchmarks/feeds_at_scale.py --products 200000 --collections 2000

Prints, per size: seconds for the partitioned join (compute + Parquet write), peak memory (PSS) of
this process plus the Spark JVM, and for the naive cross join the same up to the largest size that
finishes within --naive-budget seconds; then the speed-up at that size.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_memory import PeakMemory  # noqa: E402

from pinlanding_assets.collections.feeds import FeedConfig, naive_feeds, partitioned_feeds  # noqa: E402
from pinlanding_assets.settings import get_paths  # noqa: E402
from resources.spark import spark_session  # noqa: E402

EXCLUSIVE = ("category", "gender")


def real_distributions(warehouse: Path) -> tuple[pl.DataFrame, dict[str, tuple[float, float]], int]:
    files = sorted((warehouse / "attribute_assignments").glob("*.parquet"))
    if not files:
        raise SystemExit(f"no attribute_assignments under {warehouse}: run `make run` first")
    real = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")  # files or engine-written dirs
    products = real["product_id"].n_unique()
    shares = real.group_by("facet", "attribute_id").agg((pl.len() / products).alias("share")).sort("attribute_id")
    scores = {f: (float(g["score"].mean()), float(g["score"].std() or 0.05)) for (f,), g in real.group_by(["facet"])}
    return shares, scores, products


def synthesise(shares: pl.DataFrame, scores: dict, n_products: int, variants: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    product_index, attribute_names, row_scores = [], [], []
    for (facet,), group in shares.group_by(["facet"], maintain_order=True):
        names = group["attribute_id"].to_list()
        share = group["share"].to_numpy()
        if facet == "category":
            names = [f"{n}~{v}" for n in names for v in range(variants)]
            share = np.repeat(share / variants, variants)
        if facet in EXCLUSIVE:
            chosen = rng.choice(len(names), size=n_products, p=share / share.sum())
            carriers_of = [(np.arange(n_products), np.asarray(names)[chosen])]
        else:
            carriers_of = []
            for name, p in zip(names, share):
                carriers = np.nonzero(rng.random(n_products) < p)[0]
                carriers_of.append((carriers, np.full(carriers.size, name)))
        mean, std = scores[facet]
        for carriers, named in carriers_of:
            product_index.append(carriers)
            attribute_names.append(named)
            row_scores.append(np.clip(rng.normal(mean, std, size=carriers.size), 0.05, 0.99))
    return pl.DataFrame({
        "product_id": pl.Series(np.concatenate(product_index)).cast(pl.Utf8).str.zfill(8),
        "attribute_id": np.concatenate(attribute_names),
        "score": np.concatenate(row_scores).astype(np.float32),
    }).sort(["product_id", "attribute_id"])


def draw_collections(assignments: pl.DataFrame, count: int, seed: int) -> pl.DataFrame:
    """Distinct (category [+ 1-2 other facets]) combinations read off random synthetic products."""
    rng = np.random.default_rng(seed)
    per_product = assignments.group_by("product_id").agg(pl.col("attribute_id").sort()).sort("product_id")
    lists = per_product["attribute_id"].to_list()
    seen: dict[tuple[str, ...], None] = {}
    while len(seen) < count:
        for i in rng.integers(0, len(lists), size=count):
            attributes = lists[i]
            category = next(a for a in attributes if a.startswith("category:"))
            others = [a for a in attributes if not a.startswith("category:")]
            extra = list(rng.choice(others, size=min(len(others), int(rng.integers(0, 3))), replace=False))
            facets = {a.split(":")[0] for a in extra}
            if len(facets) == len(extra):
                seen.setdefault(tuple(sorted([category, *extra])), None)
            if len(seen) >= count:
                break
    rows = [{"collection_id": f"c{i:05d}", "anchor": key[0].split(":")[1].replace("~", "-"), "attribute_id": a}
            for i, key in enumerate(seen) for a in key]
    return pl.DataFrame(rows)


def timed(build, spark, workdir: Path, name: str, assignments: Path, members: Path, config: FeedConfig):
    target = workdir / f"out-{name}"
    shutil.rmtree(target, ignore_errors=True)
    started = time.perf_counter()
    with PeakMemory() as memory:
        feeds = build(spark.read.parquet(str(assignments)), spark.read.parquet(str(members)), config)
        feeds.write.mode("overwrite").partitionBy("anchor").parquet(str(target))
    seconds = time.perf_counter() - started
    rows = spark.read.parquet(str(target)).count()
    return seconds, memory.tree_peak_mib / 1024, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--collections", type=int, default=10_000)
    parser.add_argument("--category-variants", type=int, default=4)
    parser.add_argument("--naive-budget", type=float, default=300.0, help="stop growing the naive join past this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    shares, scores, real_products = real_distributions(get_paths().warehouse_dir)
    print(f"real distributions: {shares.height} attributes over {real_products} products")
    spark = spark_session(extra_conf={"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": "16",
                                      "spark.ui.showConsoleProgress": "false"})
    config = FeedConfig(min_feed_size=10, max_feed_size=100)
    workdir = Path(tempfile.mkdtemp(prefix="pinlanding-feeds-"))
    try:
        sizes = [(args.products, args.collections)]
        for fraction in (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5):
            sizes.append((int(args.products * fraction), max(10, int(args.collections * fraction))))
        results = {}
        naive_rate = 0.0  # seconds per (product x collection) pair of the last naive run
        for n_products, n_collections in sorted(set(sizes)):
            assignments = synthesise(shares, scores, n_products, args.category_variants, args.seed)
            members = draw_collections(assignments, n_collections, args.seed)
            a_path, m_path = workdir / f"a-{n_products}.parquet", workdir / f"m-{n_products}.parquet"
            assignments.write_parquet(a_path)
            members.write_parquet(m_path)
            seconds, peak, rows = timed(partitioned_feeds, spark, workdir, "partitioned", a_path, m_path, config)
            line = (f"{n_products:>9,} products ({assignments.height:>10,} assignments) x {n_collections:>6,} "
                    f"collections: partitioned {seconds:7.1f} s, peak {peak:5.2f} GiB, {rows:>9,} feed rows")
            expected = naive_rate * n_products * n_collections
            if expected <= args.naive_budget:
                naive_s, naive_peak, naive_rows = timed(naive_feeds, spark, workdir, "naive", a_path, m_path, config)
                assert naive_rows == rows, "both joins must publish the same feeds"
                line += f" | naive {naive_s:7.1f} s, peak {naive_peak:5.2f} GiB (naive/partitioned {naive_s / seconds:5.2f})"
                results[(n_products, n_collections)] = (seconds, naive_s)
                naive_rate = naive_s / (n_products * n_collections)
            else:
                line += f" | naive skipped: about {expected / 60:,.0f} min expected at the measured rate"
            print(line, flush=True)
        largest = max(results)
        fast, slow = results[largest]
        print(f"largest size where the naive cross join ran: {largest[0]:,} products x {largest[1]:,} collections; "
              f"partitioned join {slow / fast:.1f}x faster")
    finally:
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
