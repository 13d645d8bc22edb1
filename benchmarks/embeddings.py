"""Embedding and assignment throughput of the dual encoder on one real drop (about 940 products).

    .venv/bin/python benchmarks/embeddings.py [--products 943] [--cpus 2] [--checkpoint PATH]

Without --checkpoint the heads are untrained (throughput does not depend on the weights' values).
Compares the Ray Data streaming job (CPU preprocessing stage -> encoder actor pool) with a plain
sequential loop over the same model in the same process, then times assignment (products x
attributes scored and thresholded per second) against a 1,000-attribute vocabulary.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=943)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--checkpoint")
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
    from pinlanding_assets.encoder.model import DualEncoder, EncoderSpec, save_checkpoint

    work = Path(tempfile.mkdtemp(prefix="pinlanding-bench-"))
    split_fashion_catalog(__import__("pinlanding_assets.settings", fromlist=["get_paths"]).get_paths().fashion_catalog_dir,
                          work / "landing", n_drops=4)
    products = validate_catalog("drop-001", work / "landing" / "drop-001").products.sort("product_id").head(args.products)
    products = products.with_columns(pl.lit(False).alias("is_blank"))
    cache_dir = work / "open_clip"
    encoder = DualEncoder(EncoderSpec(checkpoint=args.checkpoint), cache_dir)
    checkpoint = args.checkpoint or str(work / "encoder.pt")
    version = save_checkpoint(encoder.model, EncoderSpec(), Path(checkpoint), {}) if not args.checkpoint else "given"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {device}; torch threads: {torch.get_num_threads()}; products: {products.height}")

    started = time.perf_counter()
    sequential = encode_products(encoder, products)
    sequential_s = time.perf_counter() - started
    print(f"sequential loop (1 process, {torch.get_num_threads()} threads): {sequential_s:.1f} s = "
          f"{products.height / sequential_s:.1f} products/s")

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    preprocess_cfg = open_clip.get_model_preprocess_cfg(encoder.model)
    inputs = products.select("product_id", "title", "image_path", "is_blank").to_arrow()
    for actors, threads in ((1, args.cpus), (2, max(1, args.cpus // 2))):
        started = time.perf_counter()
        table = embed_products_with_ray(inputs, EncoderSpec(checkpoint=checkpoint), cache_dir, version, preprocess_cfg,
                                        {"num_cpus": 0.5, "compute": ActorPoolStrategy(size=actors)}, threads=threads)
        seconds = time.perf_counter() - started
        assert table.num_rows == products.height
        print(f"Ray Data job, {actors} encoder actor(s) x {threads} thread(s): {seconds:.1f} s = "
              f"{products.height / seconds:.1f} products/s (incl. actor start)")
    ray.shutdown()

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
    print(json.dumps({"device": device, "sequential_products_per_s": round(products.height / sequential_s, 2)}))


if __name__ == "__main__":
    main()
