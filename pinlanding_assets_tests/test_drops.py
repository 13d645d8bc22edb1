from __future__ import annotations

from pathlib import Path

from pinlanding_assets.catalog.drops import READY_MARKER, ready_drops, split_fashion_catalog


def test_split_links_images_and_marks_ready(tmp_path: Path, fashion_dir: Path) -> None:
    drops = split_fashion_catalog(fashion_dir, tmp_path, n_drops=4)
    assert [d.name for d in drops] == ["drop-001", "drop-002", "drop-003", "drop-004"]
    assert sum(d.products for d in drops) == 3772
    assert ready_drops(tmp_path) == [d.name for d in drops]
    first = drops[0].path
    images = list((first / "images").iterdir())
    assert len(images) == drops[0].products
    assert all(image.is_symlink() for image in images), "images are linked, never copied"
    lines = (first / "catalog.csv").read_text().splitlines()
    assert lines[0].startswith("id,gender,masterCategory")
    assert len(lines) == drops[0].products + 1


def test_split_is_idempotent_and_rebuilds_half_written_drops(tmp_path: Path, fashion_dir: Path) -> None:
    split_fashion_catalog(fashion_dir, tmp_path, n_drops=2)
    (tmp_path / "drop-002" / READY_MARKER).unlink()
    (tmp_path / "drop-002" / "catalog.csv").write_text("half")
    again = split_fashion_catalog(fashion_dir, tmp_path, n_drops=2)
    assert [d.created for d in again] == [False, True]
    assert (tmp_path / "drop-002" / "catalog.csv").read_text().startswith("id,")
