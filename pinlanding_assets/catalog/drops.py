"""Catalog drops: directories in the landing area, each made visible by a marker written last.

A drop is only ever read once its ``_READY`` marker exists, so a drop that is still being copied in
(or whose writer crashed) is never picked up half-written.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from resources.files import written_whole

READY_MARKER = "_READY"
DROP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def is_valid_drop_name(name: str) -> bool:
    """Drop names become partition keys and path components: keep them boring."""
    return bool(DROP_NAME.match(name)) and ".." not in name


def ready_drops(landing_dir: Path) -> list[str]:
    """Names of the drops whose marker exists, sorted so sensors request them in a stable order."""
    if not landing_dir.is_dir():
        return []
    return sorted(
        entry.name
        for entry in landing_dir.iterdir()
        if entry.is_dir() and is_valid_drop_name(entry.name) and (entry / READY_MARKER).is_file()
    )


def refused_drops(landing_dir: Path) -> dict[str, str]:
    """Ready directories whose names cannot be drops, with why: reported, never silently skipped."""
    if not landing_dir.is_dir():
        return {}
    return {
        entry.name: f"drop name {entry.name!r} refused: a drop name starts with a letter or digit and uses only "
                    "letters, digits, '.', '_' or '-' (at most 100 characters); rename the directory"
        for entry in sorted(landing_dir.iterdir(), key=lambda e: e.name)
        if entry.is_dir() and not is_valid_drop_name(entry.name) and (entry / READY_MARKER).is_file()
    }


class DropError(ValueError):
    """A drop cannot be used or made (bad name, not there, not ready, empty source)."""


def drop_dir(landing_dir: Path, drop: str) -> Path:
    """The directory of a ready drop, with a clear error when it is unknown or still being written."""
    if not is_valid_drop_name(drop):
        raise DropError(f"invalid drop name {drop!r}: use letters, digits, '.', '_' or '-'")
    path = landing_dir / drop
    if not path.is_dir():
        raise DropError(f"catalog drop {drop!r} not found under {landing_dir}")
    if not (path / READY_MARKER).is_file():
        raise DropError(f"catalog drop {drop!r} at {path} has no {READY_MARKER} marker: it is not ready")
    return path


def mark_ready(path: Path) -> None:
    """Write the marker so it appears whole."""
    with written_whole(path / READY_MARKER) as marker:
        marker.write_text("ready\n")


@dataclass(frozen=True)
class DemoDrop:
    name: str
    path: Path
    products: int
    created: bool


def _catalog_lines(source_dir: Path) -> tuple[bytes, list[bytes]]:
    table = source_dir / "catalog.csv"
    if not table.is_file():
        raise DropError(f"no catalog.csv in {source_dir}: point --source at a Fashion Product Images folder "
                        "(or PINLANDING_SHARED_DATA at the shared data)")
    header, *rows = [line for line in table.read_bytes().splitlines(keepends=True) if line.strip()]
    if not rows:
        raise DropError(f"{table} has no product rows")
    return header, rows


def _write_drop(source_dir: Path, landing_dir: Path, name: str, header: bytes, part: list[bytes]) -> DemoDrop:
    """Lines verbatim (the drop keeps the source's quirks), images symlinked (never copied), built
    beside the landing area, renamed in and marked ready last; a leftover half-written drop is rebuilt."""
    final = landing_dir / name
    if final.exists():
        shutil.rmtree(final)
    with written_whole(final, directory=True) as staging:
        (staging / "images").mkdir()
        (staging / "catalog.csv").write_bytes(header + b"".join(part))
        for line in part:
            product_id = line.split(b",", 1)[0].decode("ascii", "replace").strip()
            image = source_dir / "images" / f"{product_id}.jpg"
            if image.exists():
                (staging / "images" / f"{product_id}.jpg").symlink_to(image.resolve())
    mark_ready(final)
    return DemoDrop(name, final, len(part), created=True)


def split_fashion_catalog(source_dir: Path, landing_dir: Path, n_drops: int = 4, prefix: str = "drop") -> list[DemoDrop]:
    """Split a Fashion Product Images folder into ``n_drops`` drops of consecutive ids. Existing ready
    drops are left alone."""
    if n_drops < 1:
        raise DropError("n_drops must be at least 1")
    header, rows = _catalog_lines(source_dir)
    landing_dir.mkdir(parents=True, exist_ok=True)
    chunk = -(-len(rows) // n_drops)
    drops = []
    for index in range(n_drops):
        part = rows[index * chunk : (index + 1) * chunk]
        name = f"{prefix}-{index + 1:03d}"
        if (landing_dir / name / READY_MARKER).is_file():
            drops.append(DemoDrop(name, landing_dir / name, len(part), created=False))
        else:
            drops.append(_write_drop(source_dir, landing_dir, name, header, part))
    return drops


def write_fashion_drop(source_dir: Path, landing_dir: Path, name: str, first: int, count: int) -> DemoDrop:
    """One drop of ``count`` catalog lines from line ``first`` of a Fashion folder: what a new catalog
    drop looks like to the sensor."""
    header, rows = _catalog_lines(source_dir)
    part = rows[first:first + count]
    if not part:
        raise DropError(f"no catalog lines from {first} in {source_dir}")
    landing_dir.mkdir(parents=True, exist_ok=True)
    return _write_drop(source_dir, landing_dir, name, header, part)
