"""Embedding and assignment throughput of the dual encoder on one real drop (about 940 products).

    .venv/bin/python benchmarks/embeddings.py [--products 943] [--cpus 2] [--checkpoint PATH] [--json]

Without --checkpoint the heads are untrained (throughput does not depend on the weights' values).
Compares the Ray Data streaming job (CPU decode tasks -> encoder actor pool -> Parquet written by
Ray) with a plain sequential loop over the same model in the same process, in one run, then times assignment (products x
attributes scored and thresholded per second) against a 1,000-attribute vocabulary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

COLD_LOOP = """
import sys, time
started = time.perf_counter()
from pathlib import Path
import polars as pl
from pinlanding_assets.encoder.evaluation import encode_products
from pinlanding_assets.encoder.model import DualEncoder
from pinlanding_assets.encoder.records import EncoderSpec
encoder = DualEncoder(EncoderSpec(checkpoint=sys.argv[2]), Path(sys.argv[3]))
encode_products(encoder, pl.read_parquet(sys.argv[1]), batch_size=int(sys.argv[4]))
print(time.perf_counter() - started)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=943)
    parser.add_argument("--drops", type=int, default=1, help="take the products from this many of the 4 demo drops")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--checkpoint")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="last line: one JSON object with the figures")
    args = parser.parse_args()

    import open_clip
    import ray
    import torch
    from ray.data import ActorPoolStrategy

    from pinlanding_assets.catalog.drops import split_fashion_catalog
    from pinlanding_assets.catalog.products import validate_catalog
    from pinlanding_assets.encoder.assignments import assign
    from pinlanding_assets.encoder.embeddings import embed_products_with_ray
    from pinlanding_assets.encoder.evaluation import encode_products
    from pinlanding_assets.encoder.model import DualEncoder, save_checkpoint
    from pinlanding_assets.encoder.records import EncoderSpec

    work = Path(tempfile.mkdtemp(prefix="pinlanding-bench-"))
    split_fashion_catalog(__import__("pinlanding_assets.settings", fromlist=["get_paths"]).get_paths().fashion_catalog_dir,
                          work / "landing", n_drops=4)
    products = pl.concat([validate_catalog(d, work / "landing" / d).products for d in
                          [f"drop-{i:03d}" for i in range(1, args.drops + 1)]]).sort("product_id").head(
        args.products * args.drops)
    products = products.with_columns(pl.lit(False).alias("is_blank"))
    cache_dir = work / "open_clip"
    encoder = DualEncoder(EncoderSpec(checkpoint=args.checkpoint), cache_dir)
    checkpoint = args.checkpoint or str(work / "encoder.pt")
    version = save_checkpoint(encoder.model, EncoderSpec(), Path(checkpoint), {}) if not args.checkpoint else "given"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {device}; torch threads: {torch.get_num_threads()}; products: {products.height}")

    started = time.perf_counter()
    sequential = encode_products(encoder, products, batch_size=args.batch_size)
    sequential_s = time.perf_counter() - started
    print(f"sequential loop (1 process, {torch.get_num_threads()} threads, batches of {args.batch_size}): {sequential_s:.1f} s = "
          f"{products.height / sequential_s:.1f} products/s")

    # the same loop as a job of its own: a fresh process that imports torch/open_clip and loads the
    # model before looping, as every Ray worker does (the figure above had both done already)
    products.write_parquet(work / "products.parquet")
    cold = subprocess.run([sys.executable, "-c", COLD_LOOP, str(work / "products.parquet"), checkpoint, str(cache_dir),
                           str(args.batch_size)], check=True, capture_output=True, text=True)
    cold_s = float(cold.stdout.strip().splitlines()[-1])
    print(f"sequential loop as a job (fresh process: imports, model load, loop): {cold_s:.1f} s = "
          f"{products.height / cold_s:.1f} products/s")

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    preprocess_cfg = open_clip.get_model_preprocess_cfg(encoder.model)
    inputs = products.select("product_id", "title", "image_path", "is_blank").to_arrow()
    # (actors, torch threads per actor, CPUs per decode task): the first is what product_embeddings uses
    pools = [(2, max(1, args.cpus // 2), 0.5), (1, args.cpus, 0.5)]
    ray_rates = {}
    for actors, threads, decode_cpus in pools:
        started = time.perf_counter()
        staged = embed_products_with_ray(inputs, EncoderSpec(checkpoint=checkpoint), cache_dir, version, "bench",
                                         preprocess_cfg, {"num_cpus": 0.5, "compute": ActorPoolStrategy(size=actors)},
                                         work / f"ray-{actors}-{threads}", threads=threads, batch_size=args.batch_size,
                                         decode_cpus=decode_cpus)
        seconds = time.perf_counter() - started
        assert staged.rows() == products.height
        label = f"{actors} encoder actor(s) x {threads} thread(s), decode tasks of {decode_cpus} CPU"
        ray_rates[label] = products.height / seconds
        print(f"Ray Data job, {label}: {seconds:.1f} s = {products.height / seconds:.1f} products/s "
              "(incl. actor start and model load)")
    ray.shutdown()
    default = next(iter(ray_rates))
    loop_rate = products.height / sequential_s

    vocabulary = 1000
    rng = np.random.default_rng(0)
    attributes = rng.normal(size=(vocabulary, sequential["fused"].shape[1])).astype(np.float32)
    attributes /= np.linalg.norm(attributes, axis=1, keepdims=True)
    ids = [f"colour:a{i}" if i % 2 else f"category:a{i}" for i in range(vocabulary)]
    facets = [i.split(":")[0] for i in ids]
    thresholds = {i: 0.2 for i in ids}
    started = time.perf_counter()
    scores = sequential["fused"] @ attributes.T
    table = assign("drop-001", products["product_id"].to_list(), scores, ids, facets, thresholds)
    seconds = time.perf_counter() - started
    print(f"assignment: {products.height} x {vocabulary} pairs in {seconds:.2f} s = "
          f"{products.height * vocabulary / seconds:,.0f} pairs/s ({table.height} assignments)")
    figures = {"device": device, "products": products.height, "loop_products_per_s": round(loop_rate, 2),
               "ray_products_per_s": round(ray_rates[default], 2), "ray_over_loop": round(ray_rates[default] / loop_rate, 3),
               "loop_job_products_per_s": round(products.height / cold_s, 2),
               "ray_over_loop_job": round(ray_rates[default] * cold_s / products.height, 3),
               "ray_setting": default, "ray_settings": {k: round(v, 2) for k, v in ray_rates.items()}}
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"Ray (pipeline setting) over loop: {figures['ray_over_loop']:.2f}x")


if __name__ == "__main__":
    main()
