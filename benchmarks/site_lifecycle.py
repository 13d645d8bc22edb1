"""The site a retailer ships, at scale, on synthetic inputs: build a site of N collection pages, then
the next release's (a fifth of the pages gone, a tenth with changed products), apply merchandising
overrides to every feed, and write a sitemap of 120,000 URLs. Prints seconds per step, redirects
chosen, and the largest page.

    .venv/bin/python benchmarks/site_lifecycle.py [--pages 2000] [--products 60] [--json]

Synthetic: products are drawn images (one per 10 products, 60x80 pixels, so thumbnails cost little and
the figures are the pages', the JSON-LD's and the redirect choice's); each page's feed is a window over
a shuffled product list, so pages overlap as real collections of one category do.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pinlanding_assets.collections.overrides import Merchandising, Overrides, apply_overrides  # noqa: E402
from pinlanding_assets.site.pages import SiteConfig, build_site  # noqa: E402
from pinlanding_assets.site.sitemaps import sitemap_files  # noqa: E402
from pinlanding_assets.site.thumbnails import make_thumbnails  # noqa: E402
from pinlanding_assets_tests.fast.synthetic import draw_product  # noqa: E402


def cpu_model() -> str:
    """The CPU's model and the vector flags that decide its speed (times only compare on one machine)."""
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    return f"{model} ({', '.join(f for f in ('avx2', 'fma', 'avx512f') if f in flags) or 'no avx2'})"


def inputs(pages: int, per_page: int, images: Path, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rng = random.Random(seed)
    count = pages * per_page // 4
    paths = [str(draw_product(images / f"{i}.jpg", "Blue")) for i in range(max(1, count // 10))]
    products = pl.DataFrame({"product_id": [f"p{i}" for i in range(count)],
                             "title": [f"Product {i} <b>" for i in range(count)],
                             "image_path": [paths[i % len(paths)] for i in range(count)]})
    order = list(products["product_id"])
    rng.shuffle(order)
    slugs = [f"page-{i:05d}" for i in range(pages)]
    collections = pl.DataFrame({"collection_id": slugs, "rank": list(range(1, pages + 1)),
                                "title": [f"Page {i}" for i in range(pages)], "anchor": ["dress"] * pages,
                                "attribute_ids": [[f"category:{s}"] for s in slugs],
                                "facets": [["category"]] * pages, "phrases": [[s.replace("-", " ")] for s in slugs],
                                "aliases": [[]] * pages})
    rows = []
    for i, slug in enumerate(slugs):
        start = (i * per_page // 4) % max(1, count - per_page)
        rows += [(slug, rank, product) for rank, product in enumerate(order[start:start + per_page], 1)]
    feeds = pl.DataFrame(rows, schema={"collection_id": pl.Utf8, "rank": pl.Int32, "product_id": pl.Utf8}, orient="row")
    return collections, feeds, products


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--products", type=int, default=60, help="products per page")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict[str, object] = {"cpu": cpu_model(), "pages": args.pages, "products_per_page": args.products}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        collections, feeds, products = inputs(args.pages, args.products, work / "images")
        site = work / "site"
        config = SiteConfig(base_url="https://shop.example/", build_date="2026-01-01")
        started = time.perf_counter()
        first = build_site(collections, feeds, products, site, config, make_thumbnails)
        figures["first_build_s"] = round(time.perf_counter() - started, 2)
        rng = random.Random(1)
        slugs = list(collections["collection_id"])
        gone = set(rng.sample(slugs, len(slugs) // 5))
        changed = set(rng.sample(sorted(set(slugs) - gone), len(slugs) // 10))
        later = feeds.filter(~pl.col("collection_id").is_in(sorted(gone))).filter(
            ~(pl.col("collection_id").is_in(sorted(changed)) & (pl.col("rank") == 1)))
        later = later.with_columns(pl.col("rank").rank("ordinal").over("collection_id").cast(pl.Int32))
        started = time.perf_counter()
        second = build_site(collections, later, products, site, SiteConfig(
            base_url=config.base_url, build_date="2026-02-01"), make_thumbnails)
        figures["second_build_s"] = round(time.perf_counter() - started, 2)
        lastmods = second.history.filter(pl.col("status") == "live")["lastmod"].value_counts().sort("lastmod")
        figures |= {"indexed_pages": second.indexed_pages, "redirected": second.redirects, "gone": second.gone,
                    "pages_with_new_lastmod": int(lastmods.filter(pl.col("lastmod") == "2026-02-01")["count"].sum()),
                    "thumbnails": first.thumbnails,
                    "largest_page_kb": round(max(p.stat().st_size for p in (site / "c").glob("*.html")) / 1024, 1)}
        candidates = feeds.with_columns(pl.lit("dress").alias("anchor"), pl.lit(0.9).alias("relevance"))
        overrides = Overrides.model_validate({"exclude": ["p1", "p2"], "collections": {
            s: {"pin": {"p3": 1}, "bury": ["p4"], "boost": ["p5"]} for s in slugs[::10]}})
        started = time.perf_counter()
        applied = apply_overrides(candidates, Merchandising(overrides, frozenset(products["product_id"]),
                                                            frozenset(products["product_id"][::7])), 50)
        figures["overrides_s"] = round(time.perf_counter() - started, 2)
        figures["override_rows"] = int(applied["override"].is_not_null().sum())
        figures["feed_rows"] = applied.height
        entries = [(f"c/page-{i:06d}.html", "2026-01-01") for i in range(120_000)]
        started = time.perf_counter()
        files = sitemap_files(config.base_url, entries)
        figures["sitemap_120k_s"] = round(time.perf_counter() - started, 2)
        figures["sitemap_files"] = len(files)
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        for key, value in figures.items():
            print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
