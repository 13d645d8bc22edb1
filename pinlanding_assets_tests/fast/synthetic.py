"""Small synthetic inputs for the fast tier: images drawn with PIL, Fashion-layout drops, vocabularies."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from PIL import Image, ImageDraw

from pinlanding_assets.catalog.drops import mark_ready
from pinlanding_assets.catalog.products import FASHION_COLUMNS
from pinlanding_assets.collections.topics import TopicConfig
from pinlanding_assets.site.pages import SiteConfig, build_site
from pinlanding_assets.site.thumbnails import make_thumbnails

COLOURS = {"Black": (20, 20, 20), "White": (240, 240, 240), "Red": (200, 30, 30), "Blue": (30, 60, 200)}


def draw_product(path: Path, colour: str, size: tuple[int, int] = (60, 80)) -> Path:
    """A garment-like shape of one colour on a light background, with some texture (not blank)."""
    image = Image.new("RGB", size, (235, 235, 230))
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.rectangle([width // 5, height // 6, width * 4 // 5, height * 5 // 6], fill=COLOURS[colour])
    for x in range(width // 5, width * 4 // 5, 6):
        draw.line([x, height // 6, x, height * 5 // 6], fill=(128, 128, 128))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90)
    return path


def fashion_rows(count: int) -> list[dict[str, str]]:
    """Fashion Product Images rows: alternating t-shirts and jeans in four colours."""
    rows = []
    for i in range(count):
        kind, colour = (("Tshirts", "Tshirt") if i % 2 == 0 else ("Jeans", "Jeans")), list(COLOURS)[i % 4]
        gender = "Men" if i % 3 else "Women"
        rows.append({"id": str(1000 + i), "gender": gender, "masterCategory": "Apparel", "subCategory": "Topwear",
                     "articleType": kind[0], "baseColour": colour, "season": "Summer", "year": "2012",
                     "usage": "Casual", "productDisplayName": f"Brand{i % 5} {gender} {colour} {kind[1]}"})
    return rows


def write_fashion_drop(path: Path, rows: list[dict[str, str]], ready: bool = True) -> Path:
    """A drop directory in the Fashion layout (``catalog.csv`` + ``images/<id>.jpg``)."""
    lines = [",".join(FASHION_COLUMNS)]
    for row in rows:
        lines.append(",".join(row[c] for c in FASHION_COLUMNS))
        draw_product(path / "images" / f"{row['id']}.jpg", row["baseColour"])
    (path / "catalog.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if ready:
        mark_ready(path)
    return path


def vocabulary(entries: dict[str, list[str]], dropped: dict[str, list[str]] | None = None) -> pl.DataFrame:
    """A curated vocabulary (kept entries first, then dropped ones) in the curation's schema subset."""
    rows = [{"attribute_id": f"{facet}:{phrase.replace(' ', '-')}", "facet": facet, "phrase": phrase, "aliases": [],
             "support": 10, "decision": "keep"} for facet, phrases in entries.items() for phrase in phrases]
    rows += [{"attribute_id": f"{facet}:{phrase.replace(' ', '-')}", "facet": facet, "phrase": phrase, "aliases": [],
              "support": 1, "decision": "drop"} for facet, phrases in (dropped or {}).items() for phrase in phrases]
    return pl.DataFrame(rows, schema={"attribute_id": pl.Utf8, "facet": pl.Utf8, "phrase": pl.Utf8,
                                      "aliases": pl.List(pl.Utf8), "support": pl.Int64, "decision": pl.Utf8})


XSS = "<script>alert(1)</script>"


def three_collection_site(rows: list[dict[str, str]], image_paths: list[str],
                          men: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(collections, feeds, products) of a site over Fashion rows (t-shirts and jeans): t-shirts, ``men``
    of them as men's, and jeans. The first product is named like a script and the men's collection is
    titled with markup: both must come out escaped. Jeans stand for "Women's Jeans" too (an alias, with
    markup in it)."""

    def collection(slug: str, rank: int, title: str, facets: list[tuple[str, str]], aliases=()) -> dict:
        return {"collection_id": slug, "rank": rank, "title": title, "anchor": facets[-1][1],
                "attribute_ids": [f"{f}:{p}" for f, p in facets], "facets": [f for f, _ in facets],
                "phrases": [p for _, p in facets], "aliases": list(aliases)}

    products = pl.DataFrame({"product_id": [r["id"] for r in rows],
                             "title": [XSS if i == 0 else r["productDisplayName"] for i, r in enumerate(rows)],
                             "image_path": image_paths})
    tees = [r["id"] for r in rows if r["articleType"] == "Tshirts"]
    jeans = [r["id"] for r in rows if r["articleType"] == "Jeans"]
    collections = pl.DataFrame([
        collection("t-shirt", 1, "T-Shirts", [("category", "t-shirt")]),
        collection("men-t-shirt", 2, "Men's T-Shirts & <b>More</b>", [("gender", "men"), ("category", "t-shirt")]),
        collection("jeans", 3, "Jeans", [("category", "jeans")], aliases=["Women's Jeans <i>"]),
    ])
    feeds = pl.DataFrame({
        "collection_id": ["t-shirt"] * len(tees) + ["men-t-shirt"] * men + ["jeans"] * len(jeans),
        "rank": list(range(1, len(tees) + 1)) + list(range(1, men + 1)) + list(range(1, len(jeans) + 1)),
        "product_id": tees + tees[:men] + jeans,
    })
    return collections, feeds, products


def every_combination(assignments: pl.DataFrame, facets: dict[str, str], config: TopicConfig) -> dict:
    """The reference: every anchored combination of every product, counted (what Apriori must equal)."""
    from collections import Counter, defaultdict
    from itertools import combinations

    from pinlanding_assets.collections.topics import _order, _phrase

    per_product = defaultdict(set)
    for product_id, attribute_id in assignments.select("product_id", "attribute_id").iter_rows():
        if attribute_id in facets:
            per_product[product_id].add(attribute_id)
    counts = Counter()
    for attributes in per_product.values():
        others = sorted(a for a in attributes if facets[a] != "category")
        for anchor in (a for a in attributes if facets[a] == "category"):
            for size in range(config.max_attributes):
                for extra in combinations(others, size):
                    if len({facets[a] for a in extra}) == size and len({_phrase(a) for a in (anchor, *extra)}) == size + 1:
                        counts[_order((anchor, *extra), facets)] += 1
    return {key: n for key, n in counts.items() if n >= config.min_products}


SHOP_URL = "https://shop.example/"


def build_shop_site(site_inputs: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame], target: Path, **config):
    """The site of ``three_collection_site`` built into ``target`` at ``SHOP_URL``, thumbnails included
    (``config``: other ``SiteConfig`` fields; the build date is fixed unless given)."""
    config = {"build_date": "2026-01-01", **config}
    return build_site(*site_inputs, target, SiteConfig(base_url=SHOP_URL, **config), make_thumbnails)


def with_shop_fields(products: pl.DataFrame) -> pl.DataFrame:
    """The products with a shop's fields: every product links to the shop; even rows have a price in USD,
    every third is out of stock."""
    n = products.height
    return products.with_columns(
        pl.Series("product_url", [f"https://shop.example/p/{p}?ref=a&b=<c>" for p in products["product_id"]]),
        pl.Series("price", [19.5 + i if i % 2 == 0 else None for i in range(n)], dtype=pl.Float64),
        pl.Series("currency", ["USD" if i % 2 == 0 else None for i in range(n)], dtype=pl.Utf8),
        pl.Series("availability", ["out_of_stock" if i % 3 == 0 else "in_stock" for i in range(n)]),
    )
