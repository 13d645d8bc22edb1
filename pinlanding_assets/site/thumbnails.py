"""Thumbnails for the landing pages, made from the catalog's own images."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, UnidentifiedImageError


class ThumbnailError(RuntimeError):
    """A product image that reached a feed can no longer be read."""


def thumbnail_name(product_id: str) -> str:
    """The thumbnail's file name: the product id with anything but [A-Za-z0-9_-] replaced."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", product_id) + ".jpg"


def make_thumbnail(image_path: str, out: Path, width: int) -> tuple[int, int]:
    """A JPEG ``width`` pixels wide (aspect kept, never enlarged); returns its (width, height)."""
    try:
        with Image.open(image_path) as image:
            image = image.convert("RGB")
            if image.width > width:
                image = image.resize((width, max(1, round(image.height * width / image.width))), Image.Resampling.LANCZOS)
            image.save(out, "JPEG", quality=82)
            return image.width, image.height
    except (OSError, UnidentifiedImageError) as error:
        raise ThumbnailError(f"cannot make a thumbnail from {image_path}: {error}") from error


def collage(paths: list[Path], columns: int = 6, cell: int = 120) -> Image.Image:
    """The first products of a feed side by side, for the asset's metadata."""
    rows = max(1, -(-len(paths) // columns))
    sheet = Image.new("RGB", (columns * cell, rows * cell * 4 // 3), "white")
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((cell, cell * 4 // 3))
            sheet.paste(image, ((i % columns) * cell, (i // columns) * cell * 4 // 3))
    return sheet
