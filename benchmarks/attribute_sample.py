"""Which products the VLM stage sees: the coverage-ordered sample against a hash sample of the same size.

    .venv/bin/python benchmarks/attribute_sample.py [--sizes 48,96,144] [--drops 4] [--json]

The demo catalog is split into drops as ``pinlanding run`` splits it; each drop is sampled on its own.
A ground-truth product type (articleType) with >= 10 products in the catalog is *reached* when the
samples of all drops together hold at least ``--min-support`` (the vocabulary's minimum support) of its
products: a type that is not reached can never enter the vocabulary. Labels are read for this
measurement only; the sample never sees them. No model runs, so this takes seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import polars as pl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="48,96,144")
    parser.add_argument("--drops", type=int, default=4)
    parser.add_argument("--min-support", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from pinlanding_assets.attributes.raw_attributes import coverage_order, hash_order
    from pinlanding_assets.catalog.drops import split_fashion_catalog
    from pinlanding_assets.catalog.products import validate_catalog
    from pinlanding_assets.settings import get_paths

    landing = Path(tempfile.mkdtemp(prefix="pinlanding-sample-"))
    drops = split_fashion_catalog(get_paths().fashion_catalog_dir, landing, n_drops=args.drops)
    tables = [validate_catalog(d.name, landing / d.name) for d in drops]
    ground_truth = pl.concat([t.ground_truth.select("product_id", "articleType") for t in tables])
    frequent = ground_truth.group_by("articleType").len().filter(pl.col("len") >= 10)
    out: dict[str, dict[str, int]] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        for name, order in (("hash", hash_order), ("coverage", coverage_order)):
            sampled = pl.concat([order(t.products).head(size).select("product_id") for t in tables])
            counts = sampled.join(ground_truth, on="product_id").group_by("articleType").len()
            reached = frequent.join(counts.rename({"len": "sampled"}), on="articleType")
            reached = reached.filter(pl.col("sampled") >= args.min_support).height
            out.setdefault(str(size), {})[name] = reached
        print(f"{size} products per drop: product types reached (of {frequent.height} with >= 10 products): "
              f"hash {out[str(size)]['hash']}, coverage {out[str(size)]['coverage']}")
    if args.json:
        print(json.dumps({"types_with_10_products": frequent.height, "reached": out}))


if __name__ == "__main__":
    main()
