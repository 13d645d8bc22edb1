"""Which products the VLM stage labels: a coverage-ordered, reproducible sample sized by a time budget."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from pinlanding_assets.attributes.assets import budget_sample, sample_size_for
from pinlanding_assets.attributes.raw_attributes import coverage_order, hash_order, sample_products, sample_size, title_type
from pinlanding_assets.partitions import catalog_drops

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
    with pytest.raises(ValueError, match="measured rate"):
        sample_size_for("budget", 943)
    assert sample_size_for("all", 943) is None
    assert sample_size_for("12", 943) == 12
    with pytest.raises(ValueError, match="'budget', 'all' or a positive number"):
        sample_size_for("lots", 943)


def test_the_budget_is_sized_from_the_rate_measured_on_this_instance() -> None:
    def labelled(instance, drop: str, **metadata) -> None:
        instance.report_runless_asset_event(dg.AssetMaterialization("raw_vlm_attributes", partition=drop,
                                                                    metadata=metadata))

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(catalog_drops.name, ["d1", "d2", "d3"])
        assert budget_sample(instance, "d1", "qwen-1.5b", 120.0, 943) == (None, "never measured here"), "probe first"
        labelled(instance, "d1", rate_key="qwen-1.5b", budget_seconds=120.0, sampled_products=24,
                 products_per_second=0.19)
        size, source = budget_sample(instance, "d2", "qwen-1.5b", 120.0, 943)
        assert size == 22 and "0.19 products/s measured on this instance (d1)" in source
        assert budget_sample(instance, "d1", "qwen-1.5b", 120.0, 943)[0] == 24, "a drop keeps the size it was given"
        assert budget_sample(instance, "d1", "qwen-1.5b", 60.0, 943)[0] == 11, "a new budget is sized anew"
        assert budget_sample(instance, "d3", "qwen-0.5b", 120.0, 943)[0] is None, "another model is measured anew"
        assert budget_sample(instance, "d3", "qwen-1.5b", 120.0, 5)[0] == 5
