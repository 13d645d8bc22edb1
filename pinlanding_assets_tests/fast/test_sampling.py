"""Which products the VLM stage labels: a coverage-ordered, reproducible sample sized by a time budget."""

from __future__ import annotations

import polars as pl
import pytest

from pinlanding_assets.attributes.assets import AttributeSampleConfig, sample_size_for
from pinlanding_assets.attributes.raw_attributes import coverage_order, hash_order, sample_products, sample_size, title_type

COUNTS = {"T-shirt": 60, "Casual Shoes": 25, "Jeans": 10, "Tunic": 3, "Track Pants": 2, "Cufflinks": 1}


def _products() -> pl.DataFrame:
    rows = [{"product_id": f"{kind[:3]}-{i:03d}", "title": f"Brand{i % 7} Women Blue {kind}"}
            for kind, count in COUNTS.items() for i in range(count)]
    return pl.DataFrame(rows)


def test_title_type_reads_the_last_word() -> None:
    assert title_type("Roadster Men Navy Blue T-Shirts") == "t-shirt"
    assert title_type("Puma Men Black Track Pants") == "pants"
    assert title_type("Titan Women Watches!") == "watch"
    assert title_type("") == "" and title_type(None) == ""


def test_coverage_order_reaches_every_type_first() -> None:
    products = _products()
    first = coverage_order(products).head(len(COUNTS))
    assert {title_type(t) for t in first["title"]} == {title_type(k) for k in COUNTS}
    by_hash = hash_order(products).head(len(COUNTS))
    assert {title_type(t) for t in by_hash["title"]} != {title_type(k) for k in COUNTS}, "a hash prefix misses rare types"
    twelve = coverage_order(products).head(12)["title"].map_elements(title_type, return_dtype=pl.Utf8).value_counts()
    shares = dict(zip(twelve["title"], twelve["count"]))
    assert shares["t-shirt"] > shares["jeans"] >= shares["cufflink"] == 1, "common types still get more"


def test_sample_is_stable_and_nested() -> None:
    products = _products()
    small = sample_products(products, 10, seed=3)
    assert small.equals(sample_products(products.reverse(), 10, seed=3)), "row order does not matter"
    assert set(small["product_id"]) < set(sample_products(products, 30, seed=3)["product_id"]), "a larger sample is a superset"
    assert small["product_id"].is_sorted()
    assert sample_products(products, None).height == products.height


def test_sample_size_follows_the_budget() -> None:
    assert sample_size(120, 0.8, 943) == 96
    assert sample_size(120, 0.8, 50) == 50 and sample_size(1, 0.1, 50) == 1
    with pytest.raises(ValueError, match="positive"):
        sample_size(0, 0.8, 10)
    config = AttributeSampleConfig(sample="budget", budget_seconds=60, products_per_second=0.5)
    assert sample_size_for(config, 943) == 30
    assert sample_size_for(AttributeSampleConfig(sample="all"), 943) is None
    assert sample_size_for(AttributeSampleConfig(sample="12"), 943) == 12
    with pytest.raises(ValueError, match="'budget', 'all' or a positive number"):
        sample_size_for(AttributeSampleConfig(sample="lots"), 943)
