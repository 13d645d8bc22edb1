from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from pinlanding_assets.catalog.products import check_image, validate_catalog
from pinlanding_assets_tests.conftest import BROKEN_REASONS


def test_broken_rows_are_quarantined_with_reasons(broken_drop: Path) -> None:
    tables = validate_catalog("drop-broken", broken_drop)
    reasons = dict(zip(tables.quarantine["product_id"], tables.quarantine["reason"]))
    for product_id, expected in BROKEN_REASONS.items():
        assert expected in reasons[product_id], (product_id, reasons.get(product_id))
    duplicates = tables.quarantine.filter(pl.col("reason").str.starts_with("duplicate product_id"))
    assert duplicates.height == 1
    # Every row read leaves: 40 good + 1 comma-title good, 5 broken + 1 duplicate quarantined.
    assert tables.products.height == 41
    assert tables.quarantine.height == 6
    assert tables.quarantine["raw"].str.contains("caf\ufffd").any(), "the raw text of a bad-encoding row is kept"


def test_unquoted_commas_stay_in_the_title(broken_drop: Path) -> None:
    products = validate_catalog("drop-broken", broken_drop).products
    assert products.filter(pl.col("product_id") == "99000006")["title"].item() == "Roadster Men, Blue, Slim Jeans"


def test_labels_are_kept_apart_from_model_inputs(broken_drop: Path) -> None:
    tables = validate_catalog("drop-broken", broken_drop)
    assert not {"articleType", "baseColour", "gender", "usage"} & set(tables.products.columns)
    assert {"articleType", "baseColour", "gender", "usage"} <= set(tables.ground_truth.columns)
    assert tables.ground_truth["product_id"].to_list() == tables.products["product_id"].to_list()


def test_real_catalog_validates_cleanly(fashion_dir: Path) -> None:
    tables = validate_catalog("full", fashion_dir)
    assert tables.products.height + tables.quarantine.height == 3772
    assert tables.quarantine.height <= 10, tables.quarantine.head(10)
    assert tables.products["product_id"].is_unique().all()


def test_generic_layout_parquet_and_csv(tmp_path: Path, fashion_dir: Path) -> None:
    image = next((fashion_dir / "images").glob("*.jpg"))
    shutil.copy(image, tmp_path / "a.jpg")
    frame = pl.DataFrame({
        "product_id": ["p1", "p2", "p3"],
        "title": ["Walnut coffee table", "", "Oak bookcase"],
        "description": ["Mid-century", "x", "Tall"],
        "image_path": ["a.jpg", "a.jpg", "missing.jpg"],
        "category": ["tables", "tables", "shelves"],
    })
    frame.write_parquet(tmp_path / "products.parquet")
    tables = validate_catalog("g", tmp_path)
    assert tables.layout == "generic"
    assert tables.products["product_id"].to_list() == ["p1"]
    assert tables.products["description"].item() == "Mid-century"
    assert tables.ground_truth.columns == ["product_id", "category"]
    assert sorted(tables.quarantine["reason"].to_list()) == ["empty title", "image missing: missing.jpg"]

    (tmp_path / "products.parquet").unlink()
    frame.write_csv(tmp_path / "products.csv")
    assert validate_catalog("g", tmp_path).products["product_id"].to_list() == ["p1"]


def test_truncated_image_is_undecodable(tmp_path: Path, fashion_dir: Path) -> None:
    data = next((fashion_dir / "images").glob("*.jpg")).read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 3])
    assert "undecodable" in (check_image(tmp_path / "t.jpg").error or "")
