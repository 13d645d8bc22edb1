"""VLM-stage and LLM-judge throughput on this machine, with 1 vs 2 Ray actors (threads split).

    .venv/bin/python benchmarks/attribute_stage.py [--products 12] [--judgements 24] [--llm NAME]

Each VLM configuration starts fresh actors, so its wall time includes loading the model in every
actor (the load time of one model is printed first); judge figures are measured after loading.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=12)
    parser.add_argument("--judgements", type=int, default=24)
    parser.add_argument("--llm", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()

    import ray
    from ray.data import ActorPoolStrategy

    from pinlanding_assets.attributes.llm import LocalLLM
    from pinlanding_assets.attributes.raw_attributes import extract_with_ray, sample_products
    from pinlanding_assets.attributes.vocabulary import judge_messages
    from pinlanding_assets.catalog.drops import split_fashion_catalog
    from pinlanding_assets.catalog.image_features import describe_batch
    from pinlanding_assets.catalog.products import validate_catalog
    from pinlanding_assets.settings import get_paths
    from resources.models import gguf_path

    landing = Path(tempfile.mkdtemp(prefix="pinlanding-bench-"))
    split_fashion_catalog(get_paths().fashion_catalog_dir, landing, n_drops=4)
    products = sample_products(validate_catalog("drop-001", landing / "drop-001").products, args.products)
    colours = pl.from_arrow(describe_batch(products.select("product_id", "image_path").to_arrow()))
    inputs = products.join(colours.select("product_id", pl.col("dominant_colours").alias("image_colours")),
                           on="product_id").select("product_id", "title", "description", "image_path",
                                                   "image_colours").to_arrow()
    model = gguf_path(args.llm)

    started = time.perf_counter()
    LocalLLM(model, threads=args.cpus)
    load_s = time.perf_counter() - started
    print(f"model {args.llm}: load {load_s:.1f} s")

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    for actors in (1, 2):
        spec = {"backend": "offline", "gguf": str(model), "threads": max(1, args.cpus // actors)}
        options = {"num_cpus": 0.5, "compute": ActorPoolStrategy(size=actors)}
        started = time.perf_counter()
        results = extract_with_ray(inputs, spec, options, batch_size=max(1, args.products // (2 * actors)))
        wall = time.perf_counter() - started
        ok = sum(error is None for error in results.column("error").to_pylist())
        print(f"VLM stage, {actors} actor(s) x {spec['threads']} thread(s): {args.products} products in {wall:.1f} s "
              f"= {args.products / wall:.3f} products/s incl. actor start ({ok} parsed)")

    phrases = [("colour", "black"), ("product type", "t-shirt"), ("material", "cotton"), ("pattern", "inkfruit"),
               ("occasion", "party"), ("colour", "mauve")] * (args.judgements // 6 + 1)
    questions = [judge_messages(kind, facet, phrase) for facet, phrase in phrases[: args.judgements // 2]
                 for kind in ("searchable", "coherent")]

    @ray.remote(num_cpus=0.5)
    class Judge:
        def __init__(self, path: str, threads: int) -> None:
            self.llm = LocalLLM(Path(path), threads=threads)

        def score(self, batch):
            return [self.llm.yes_probability(messages) for messages in batch]

    for actors in (1, 2):
        judges = [Judge.remote(str(model), max(1, args.cpus // actors)) for _ in range(actors)]
        ray.get([j.score.remote(questions[:1]) for j in judges])  # load + warm the cached prefix
        started = time.perf_counter()
        ray.get([j.score.remote(questions[i::actors]) for i, j in enumerate(judges)])
        wall = time.perf_counter() - started
        print(f"judge, {actors} actor(s) x {max(1, args.cpus // actors)} thread(s): {len(questions)} calls in "
              f"{wall:.1f} s = {len(questions) / wall:.2f} calls/s (after model load)")
        for judge in judges:
            ray.kill(judge)
    ray.shutdown()


if __name__ == "__main__":
    main()
