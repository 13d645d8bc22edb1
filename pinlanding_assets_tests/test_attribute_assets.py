"""The attribute assets through Dagster on a real (deliberately broken) drop with the fast LLM."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pinlanding_assets.attributes import assets as attribute_assets
from pinlanding_assets.catalog import assets as catalog_assets
from pinlanding_assets.partitions import catalog_drops
from resources import build_resources


def test_vlm_stage_and_vocabulary_materialize(broken_drop: Path, project_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINLANDING_LLM", "qwen2.5-coder-0.5b-instruct-q4")
    monkeypatch.setenv("PINLANDING_ATTRIBUTE_SAMPLE", "8")
    monkeypatch.setenv("PINLANDING_MIN_SUPPORT", "2")
    monkeypatch.setenv("PINLANDING_MODEL_CACHE", str(project_dirs.parent / "models"))
    assets = dg.load_assets_from_modules([catalog_assets, attribute_assets])
    partitioned = [a for a in assets if a.partitions_def is not None]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(catalog_drops.name, ["drop-broken"])
        resources = build_resources("local")
        assert dg.materialize(partitioned, partition_key="drop-broken", instance=instance, resources=resources).success
        result = dg.materialize(assets, selection=["curated_vocabulary"], instance=instance, resources=resources)
        assert result.success

    warehouse = project_dirs / "warehouse"
    attributes = pl.read_parquet(warehouse / "raw_vlm_attributes" / "drop-broken.parquet")
    quarantine = pl.read_parquet(warehouse / "raw_vlm_quarantine" / "drop-broken.parquet")
    products = pl.read_parquet(warehouse / "catalog_products" / "drop-broken.parquet")
    assert attributes["product_id"].n_unique() + quarantine.height == 8, "every sampled product leaves"
    assert set(attributes["product_id"]) <= set(products["product_id"])
    assert set(attributes["backend"]) == {"offline"} and set(attributes["model"]) == {"qwen2.5-coder-0.5b-instruct-q4"}
    assert "category" in set(attributes["facet"])

    vocabulary = pl.read_parquet(warehouse / "curated_vocabulary.parquet")
    assert vocabulary.height > 0 and vocabulary["decision"].is_in(["keep", "drop"]).all()
    metadata = result.asset_materializations_for_node("curated_vocabulary")[0].metadata
    assert metadata["size_raw_phrases"].value >= metadata["size_after_judge"].value
    assert "data:image/png;base64," in metadata["vocabulary_map"].value
    assert 0.0 <= metadata["coverage"].value <= 1.0
