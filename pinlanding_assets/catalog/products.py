"""Read a catalog drop's product table, validate every row and image, and split the result into
valid products, ground-truth labels (kept apart, for evaluation only) and a quarantine table.

Two layouts are supported:
- Fashion Product Images: ``catalog.csv`` or ``styles.csv`` (id, gender, masterCategory, subCategory,
  articleType, baseColour, season, year, usage, productDisplayName) with images at ``images/<id>.jpg``.
  Titles may hold unquoted commas: the first nine fields are split, the rest is the title.
- Generic: ``products.csv`` or ``products.parquet`` with product_id, title, description, image_path,
  the optional shop fields product_url, price, currency and availability, and optional label columns.
  A shop field that is present but malformed quarantines its row with the reason.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
from PIL import Image, UnidentifiedImageError

FASHION_TABLES = ("catalog.csv", "styles.csv")
GENERIC_TABLES = ("products.parquet", "products.csv")
FASHION_COLUMNS = (
    "id", "gender", "masterCategory", "subCategory", "articleType",
    "baseColour", "season", "year", "usage", "productDisplayName",
)
FASHION_GROUND_TRUTH = FASHION_COLUMNS[1:-1]
GENERIC_REQUIRED = ("product_id", "title", "image_path")
SHOP_FIELDS = ("product_url", "price", "currency", "availability")
GENERIC_INPUTS = ("product_id", "title", "description", "image_path", *SHOP_FIELDS)
AVAILABILITY = {"in_stock": "InStock", "out_of_stock": "OutOfStock", "preorder": "PreOrder",
                "backorder": "BackOrder", "discontinued": "Discontinued"}  # accepted value -> schema.org name
UNAVAILABLE = frozenset({"out_of_stock", "discontinued"})  # shown last in feeds, marked on the cards
MAX_URL_CHARS = 2_048
MIN_IMAGE_SIDE = 16
MAX_RECORD_CHARS = 131_072  # csv's own field limit: a record longer than this is a broken row, not a title
RAW_PREVIEW_CHARS = 2_000  # of an unreadable record, kept in the quarantine row
_SURROGATE = re.compile("[\udc80-\udcff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WHITESPACE = re.compile(r"\s+")

PRODUCT_SCHEMA = {
    "drop": pl.Utf8, "product_id": pl.Utf8, "title": pl.Utf8, "description": pl.Utf8,
    "image_path": pl.Utf8, "image_width": pl.Int32, "image_height": pl.Int32,
    "image_bytes": pl.Int64, "source_row": pl.Int64,
    "product_url": pl.Utf8, "price": pl.Float64, "currency": pl.Utf8, "availability": pl.Utf8,
}
QUARANTINE_SCHEMA = {
    "drop": pl.Utf8, "source_row": pl.Int64, "product_id": pl.Utf8, "reason": pl.Utf8, "raw": pl.Utf8,
}


class CatalogTableError(ValueError):
    """The drop's product table is missing or unreadable: the whole drop fails, naming the file."""


@dataclass(frozen=True)
class RawRow:
    """One row as read, before validation; ``error`` is set when the row could not even be parsed."""

    source_row: int
    fields: dict[str, str]
    error: str | None = None
    text: str | None = None  # the record as read, when it could not be split into fields


@dataclass(frozen=True)
class CatalogTables:
    products: pl.DataFrame
    ground_truth: pl.DataFrame
    quarantine: pl.DataFrame
    layout: str
    table_path: Path


def find_product_table(drop_path: Path) -> tuple[str, Path]:
    """The layout and file of a drop's product table, or a clear error listing what was looked for."""
    for name in FASHION_TABLES:
        if (drop_path / name).is_file():
            return "fashion", drop_path / name
    for name in GENERIC_TABLES:
        if (drop_path / name).is_file():
            return "generic", drop_path / name
    expected = ", ".join(FASHION_TABLES + GENERIC_TABLES)
    raise CatalogTableError(f"no product table in {drop_path}: expected one of {expected}")


def _clean(value: str | None) -> str:
    return _WHITESPACE.sub(" ", value or "").strip()


def _closes(text: str) -> bool:
    """Whether ``text`` ends outside a quoted field (strict parsing reports an open quote at its end)."""
    try:
        for _ in csv.reader(io.StringIO(text), strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" not in str(exc)
    return True


def _parses_alone(line: str, width: int) -> bool:
    """A line that is a whole row of at least ``width`` fields by itself: the start of the next record,
    not the continuation of an open quote."""
    if not _closes(line):
        return False
    try:
        rows = list(csv.reader(io.StringIO(line)))
    except csv.Error:
        return False
    return len(rows) == 1 and len(rows[0]) >= width


Record = tuple[int, list[str] | None, str, str | None]  # first line number, fields, raw text, error


def _next_record(lines: list[str], index: int, width: int | None) -> tuple[Record, int]:
    """The CSV record starting at ``lines[index]`` and the index after it, parsed on its own so that a
    broken record costs only itself: an unclosed quote ends where the next line is a whole row of
    ``width`` fields (None: the header, which has no width yet), an oversized field is reported for its
    record. Invalid UTF-8 survives as surrogates, caught per row."""
    start, text = index + 1, lines[index]
    index += 1
    while not _closes(text):
        if index >= len(lines) or len(text) > MAX_RECORD_CHARS or (
                width is not None and _parses_alone(lines[index], width)):
            return (start, None, text, "unclosed quote: a quoted field never ends, so the row cannot be read"), index
        text += lines[index]
        index += 1
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        return (start, None, text, f"unreadable CSV row: {exc}"), index
    return (start, rows[0] if rows else [], text, None), index


def _csv_table(path: Path) -> tuple[list[str], Iterator[Record]]:
    """(the header, every record after it), the file read once."""
    try:
        with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
            lines = handle.readlines()
    except OSError as exc:
        raise CatalogTableError(f"cannot open product table {path}: {exc}") from exc
    index = 0
    while index < len(lines):
        (_, fields, _, error), index = _next_record(lines, index, None)
        if error:
            raise CatalogTableError(f"product table {path} has an unreadable header: {error}")
        if fields and any(value.strip() for value in fields):
            header = [name.strip().lstrip("\ufeff") for name in fields]
            break
    else:
        raise CatalogTableError(f"product table {path} is empty")

    def records(position: int) -> Iterator[Record]:
        while position < len(lines):
            record, position = _next_record(lines, position, len(header))
            yield record

    return header, records(index)


def _encoding_error(fields: list[str]) -> str | None:
    bad = [value for value in fields if _SURROGATE.search(value)]
    return "bad encoding: field is not valid UTF-8" if bad else None


def _printable(fields: list[str]) -> list[str]:
    return [value.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for value in fields]


def _control_error(columns: list[str], fields: list[str]) -> str | None:
    for name, value in zip(columns + [columns[-1]] * len(fields), fields):
        found = _CONTROL.search(value)
        if found:
            return f"control character U+{ord(found.group()):04X} in field {name!r}"
    return None


def _raw_rows(records, columns: list[str], exact: bool) -> list[RawRow]:
    """Blank rows skipped; unreadable records, encoding, control-character and field-count problems
    recorded on the row, not raised.

    ``exact``: the row must have as many fields as ``columns``; otherwise it needs at least as many
    and the surplus belongs to the last column (Fashion titles with unquoted commas).
    """
    out = []
    for line, row, text, error in records:
        if error:
            shown = _printable([text[:RAW_PREVIEW_CHARS]])[0]
            out.append(RawRow(line, {}, error, shown))
            continue
        if not any(value.strip() for value in row):
            continue
        error = _encoding_error(row) or _control_error(columns, row)
        row = _printable(row)
        if len(row) < len(columns) or (exact and len(row) != len(columns)):
            error = error or f"malformed row: expected {len(columns)} fields, got {len(row)}"
            row = row + [""] * (len(columns) - len(row))
        fields = dict(zip(columns[:-1], row[: len(columns) - 1]))
        fields[columns[-1]] = ",".join(row[len(columns) - 1 :]) if not exact else row[len(columns) - 1]
        out.append(RawRow(line, fields, error))
    return out


def read_fashion_rows(path: Path) -> list[RawRow]:
    header, records = _csv_table(path)
    if tuple(header[:10]) != FASHION_COLUMNS:
        raise CatalogTableError(f"product table {path} has header {header}, expected {list(FASHION_COLUMNS)}")
    return _raw_rows(records, list(FASHION_COLUMNS), exact=False)


def read_generic_rows(path: Path) -> list[RawRow]:
    if path.suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:
            raise CatalogTableError(f"unreadable Parquet product table {path}: {exc}") from exc
        columns = frame.columns
        records = [
            (index + 1, ["" if value is None else str(value) for value in record], "", None)
            for index, record in enumerate(frame.iter_rows())
        ]
    else:
        columns, records = _csv_table(path)
    missing = [name for name in GENERIC_REQUIRED if name not in columns]
    if missing:
        raise CatalogTableError(f"product table {path} lacks required columns {missing} (has {columns})")
    return _raw_rows(records, list(columns), exact=True)


@dataclass(frozen=True)
class ImageCheck:
    width: int = 0
    height: int = 0
    size: int = 0
    error: str | None = None


def check_image(path: Path) -> ImageCheck:
    """Open and fully decode (at reduced scale) so truncated files are caught, not just bad headers."""
    if not path.exists():
        return ImageCheck(error=f"image missing: {path.name}")
    size = path.stat().st_size
    if size == 0:
        return ImageCheck(error=f"image empty (0 bytes): {path.name}")
    try:
        with Image.open(path) as image:
            width, height = image.size
            image.draft("RGB", (128, 128))
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return ImageCheck(size=size, error=f"image undecodable: {path.name}: {exc}")
    except Image.DecompressionBombError as exc:
        return ImageCheck(size=size, error=f"image too large: {path.name}: {exc}")
    if min(width, height) < MIN_IMAGE_SIDE:
        return ImageCheck(width, height, size, f"image too small ({width}x{height}): {path.name}")
    return ImageCheck(width, height, size)


def _image_path(layout: str, drop_path: Path, fields: dict[str, str], product_id: str) -> tuple[Path, str | None]:
    """The row's image inside the drop directory, or why the row names none there (nothing outside the
    drop is ever opened)."""
    if layout == "fashion":
        if "/" in product_id or product_id.startswith("."):
            return drop_path, f"product id {product_id!r} cannot name an image file"
        return drop_path / "images" / f"{product_id}.jpg", None
    declared = fields.get("image_path", "").strip()
    if not declared:
        return drop_path, "missing image_path"
    if Path(declared).is_absolute():
        return drop_path, f"image_path {declared!r} is absolute: it must be relative to the drop directory"
    inside = os.path.normpath(declared)
    if inside == os.curdir or inside.split(os.sep)[0] == os.pardir:
        return drop_path, f"image_path {declared!r} leaves the drop directory"
    return drop_path / inside, None


def with_shop_columns(products: pl.DataFrame) -> pl.DataFrame:
    """``products`` with every shop field, null where absent (tables written before the fields existed)."""
    return products.with_columns([pl.lit(None, PRODUCT_SCHEMA[c]).alias(c) for c in SHOP_FIELDS
                                  if c not in products.columns])


def shop_fields(fields: dict[str, str]) -> tuple[dict[str, object], str | None]:
    """The row's optional shop fields, normalised (price a number, availability one of ``AVAILABILITY``'s
    keys), or why they cannot be used. A URL must be absolute http(s) with a host; a price needs a currency
    (ISO 4217: three capital letters) and is a number >= 0."""
    url, price, currency, availability = (_clean(fields.get(name)) for name in SHOP_FIELDS)
    out: dict[str, object] = {"product_url": None, "price": None, "currency": None, "availability": None}
    if url:
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or len(url) > MAX_URL_CHARS or " " in url:
            return out, f"product_url {url[:200]!r} is not an absolute http(s) URL"
        out["product_url"] = url
    if price:
        if not re.fullmatch(r"[0-9][0-9,]*(\.[0-9]+)?", price):
            return out, f"price {price[:50]!r} is not a number >= 0 (digits, an optional decimal point)"
        if not re.fullmatch(r"[A-Z]{3}", currency):
            return out, f"price {price!r} needs a currency code of three capital letters (got {currency[:20]!r})"
        out["price"], out["currency"] = float(price.replace(",", "")), currency
    elif currency and not re.fullmatch(r"[A-Z]{3}", currency):
        return out, f"currency {currency[:20]!r} is not a code of three capital letters"
    if availability:
        key = availability.lower().replace(" ", "_").replace("-", "_")
        if key not in AVAILABILITY:
            return out, f"availability {availability[:50]!r} is not one of {', '.join(AVAILABILITY)}"
        out["availability"] = key
    return out, None


def validate_catalog(drop: str, drop_path: Path, workers: int = 4) -> CatalogTables:
    """Every row leaves as a valid product or a quarantine row with its reason."""
    layout, table_path = find_product_table(drop_path)
    rows = read_fashion_rows(table_path) if layout == "fashion" else read_generic_rows(table_path)
    if not rows:
        raise CatalogTableError(f"product table {table_path} has no product rows (a header and nothing else)")
    id_field, title_field = ("id", "productDisplayName") if layout == "fashion" else ("product_id", "title")
    ground_truth_columns = (
        list(FASHION_GROUND_TRUTH) if layout == "fashion"
        else sorted({name for row in rows for name in row.fields} - set(GENERIC_INPUTS))
    )

    products, ground_truth, quarantine, pending = [], [], [], []
    first_seen: dict[str, int] = {}

    def reject(row: RawRow, product_id: str | None, reason: str) -> None:
        quarantine.append({
            "drop": drop, "source_row": row.source_row, "product_id": product_id or None,
            "reason": reason,
            "raw": row.text if row.text is not None else json.dumps(row.fields, ensure_ascii=False, sort_keys=True),
        })

    for row in rows:
        product_id = _clean(row.fields.get(id_field))
        if row.error:
            reject(row, product_id, row.error)
        elif not product_id:
            reject(row, None, "missing product_id")
        elif product_id in first_seen:
            reject(row, product_id, f"duplicate product_id (first seen at line {first_seen[product_id]})")
        elif not _clean(row.fields.get(title_field)):
            first_seen[product_id] = row.source_row
            reject(row, product_id, "empty title")
        else:
            first_seen[product_id] = row.source_row
            pending.append((row, product_id))

    located, shop = [], {}
    for row, product_id in pending:
        path, error = _image_path(layout, drop_path, row.fields, product_id)
        fields, shop_error = shop_fields(row.fields) if layout == "generic" else ({}, None)
        if error or shop_error:
            reject(row, product_id, error or shop_error)
        else:
            located.append((row, product_id, path))
            shop[product_id] = fields
    pending = [(row, product_id) for row, product_id, _ in located]
    paths = [path for _, _, path in located]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        checks = list(pool.map(check_image, paths))

    for (row, product_id), path, check in zip(pending, paths, checks):
        if check.error:
            reject(row, product_id, check.error)
            continue
        products.append({
            "drop": drop, "product_id": product_id, "title": _clean(row.fields.get(title_field)),
            "description": _clean(row.fields.get("description")), "image_path": str(path.absolute()),
            "image_width": check.width, "image_height": check.height, "image_bytes": check.size,
            "source_row": row.source_row, **shop.get(product_id, {}),
        })
        ground_truth.append({"product_id": product_id, **{name: _clean(row.fields.get(name)) for name in ground_truth_columns}})

    return CatalogTables(
        products=pl.DataFrame(products, schema=PRODUCT_SCHEMA),
        ground_truth=pl.DataFrame(ground_truth, schema={"product_id": pl.Utf8,
                                                        **{name: pl.Utf8 for name in ground_truth_columns}}),
        quarantine=pl.DataFrame(quarantine, schema=QUARANTINE_SCHEMA).sort("source_row"),
        layout=layout,
        table_path=table_path,
    )
