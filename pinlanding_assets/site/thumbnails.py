"""Thumbnails for the landing pages, made from the catalog's own images: one per image (products that
share an image share its thumbnail), in this process or as Ray Data tasks for large sites."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ThumbnailError(RuntimeError):
    """A product image that reached a feed can no longer be read."""


def thumbnail_name(image_path: str, width: int) -> str:
    """The file name of the image's thumbnail at ``width``: a hash of the image path (safe whatever the
    path holds) and the width asked for."""
    return f"{hashlib.sha1(image_path.encode()).hexdigest()[:20]}-{width}.jpg"


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


def make_thumbnails(image_paths: list[str], out_dir: Path, width: int) -> dict[str, tuple[int, int]]:
    """Every image's thumbnail in this process: image path -> (width, height)."""
    return {path: make_thumbnail(path, out_dir / thumbnail_name(path, width), width) for path in sorted(set(image_paths))}


def _thumbnail_batch(batch: dict[str, np.ndarray], out_dir: str, width: int) -> dict[str, np.ndarray]:
    sizes, errors = [], []
    for path in batch["image_path"]:
        try:
            sizes.append(make_thumbnail(str(path), Path(out_dir) / thumbnail_name(str(path), width), width))
            errors.append("")
        except ThumbnailError as error:
            sizes.append((0, 0))
            errors.append(str(error))
    return {"image_path": batch["image_path"], "width": np.asarray([s[0] for s in sizes]),
            "height": np.asarray([s[1] for s in sizes]), "error": np.asarray(errors, dtype=object)}


def make_thumbnails_with_ray(image_paths: list[str], out_dir: Path, width: int,
                             batch_size: int = 64) -> dict[str, tuple[int, int]]:
    """The same thumbnails as Ray Data CPU tasks (one per batch of images, as many at once as there
    are CPUs); only the sizes come back. A Ray cluster must share ``out_dir``'s file system."""
    import pyarrow as pa

    from resources.tables import arrow_dataset

    paths = sorted(set(image_paths))
    if not paths:
        return {}
    dataset = arrow_dataset(pa.table({"image_path": paths}), batch_size).map_batches(
        _thumbnail_batch, fn_kwargs={"out_dir": str(out_dir), "width": width}, batch_format="numpy",
        batch_size=batch_size, num_cpus=1)
    sizes, errors = {}, []
    for batch in dataset.iter_batches(batch_size=4096, batch_format="numpy"):
        for path, w, h, error in zip(batch["image_path"], batch["width"], batch["height"], batch["error"]):
            if error:
                errors.append(str(error))
            sizes[str(path)] = (int(w), int(h))
    if errors:
        raise ThumbnailError(f"{len(errors)} image(s) could not be made into thumbnails, e.g. {errors[0]}")
    return sizes


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
