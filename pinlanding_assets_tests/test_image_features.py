from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from PIL import Image, ImageFilter

from pinlanding_assets.catalog.image_features import (
    FEATURE_SCHEMA,
    describe_batch,
    describe_image,
    image_features_with_ray,
    name_colours,
)


def test_palette_names_pure_colours() -> None:
    pixels = np.array([[250, 250, 250]] * 10 + [[20, 20, 20]] * 30 + [[30, 40, 90]] * 60, dtype=np.uint8)
    names, shares = name_colours(pixels)
    assert names == ["Navy Blue", "Black", "White"]
    assert shares == [0.6, 0.3, 0.1]


def test_blank_and_blurred_images_are_flagged(tmp_path: Path, fashion_dir: Path) -> None:
    Image.new("RGB", (300, 400), (255, 255, 255)).save(tmp_path / "blank.jpg")
    assert describe_image(str(tmp_path / "blank.jpg")).is_blank
    source = fashion_dir / "images" / "1852.jpg"
    Image.open(source).filter(ImageFilter.GaussianBlur(6)).save(tmp_path / "blur.jpg")
    sharp, blurred = describe_image(str(source)), describe_image(str(tmp_path / "blur.jpg"))
    assert not sharp.is_blank and not sharp.is_blurry
    assert blurred.is_blurry and blurred.sharpness < sharp.sharpness / 4


def test_named_colours_agree_with_ground_truth(fashion_rows: list[dict[str, str]], fashion_dir: Path) -> None:
    """On real products with a plain colour label, the label is among the named dominant colours."""
    simple = {"Black", "White", "Blue", "Navy Blue", "Red", "Green", "Pink", "Grey", "Brown", "Yellow"}
    rows = [row for row in fashion_rows if row["baseColour"] in simple][:300]
    hits = sum(
        row["baseColour"] in describe_image(str(fashion_dir / "images" / f"{row['id']}.jpg")).dominant_colours
        for row in rows
    )
    assert hits / len(rows) >= 0.65, hits / len(rows)


def test_batch_keeps_a_row_for_an_unreadable_image(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    out = describe_batch(pa.table({"product_id": ["x"], "image_path": [str(tmp_path / "bad.jpg")]}))
    assert out.schema == FEATURE_SCHEMA
    assert out.column("error").to_pylist()[0].startswith("UnidentifiedImageError")


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_ray_job_matches_sequential_run(local_ray, fashion_rows: list[dict[str, str]], fashion_dir: Path) -> None:
    rows = fashion_rows[:150]
    table = pa.table({
        "product_id": [row["id"] for row in rows],
        "image_path": [str(fashion_dir / "images" / f"{row['id']}.jpg") for row in rows],
    })
    result = pl.from_arrow(image_features_with_ray(table, batch_size=16))
    assert result.height == 150
    assert result["product_id"].to_list() == sorted(row["id"] for row in rows)
    expected = pl.from_arrow(describe_batch(table)).sort("product_id")
    assert result.equals(expected)
