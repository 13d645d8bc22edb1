"""The partition schemes of the graph.

- ``catalog_drops``: one dynamic partition per catalog drop directory (registered by a sensor).
- ``model_releases``: one dynamic partition per model release (``r001``, ``r002``, ...): the curated
  vocabulary, the dual encoder and the attribute embeddings trained together, and everything published
  from them (collections, feeds, pages), so a previous release can be compared or published again.
- ``search_weeks_for(log_dir)``: weekly time windows (Monday to Sunday) over the search log folder,
  bounded by the weeks its files name, so a 2006 log does not show a thousand empty weeks up to today
  (the code location builds them when it loads).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import dagster as dg
import polars as pl

catalog_drops = dg.DynamicPartitionsDefinition(name="catalog_drops")
model_releases = dg.DynamicPartitionsDefinition(name="model_releases")

WEEK_FILE = re.compile(r"(\d{4})-W(\d{2})\.(tsv|csv|parquet)$")
RELEASE_KEY = re.compile(r"^r(\d{3,})$")


def week_of_file(path: Path) -> dt.date | None:
    """The Monday of the ISO week a log file names (``searches-2006-W10.tsv``), or None."""
    match = WEEK_FILE.search(path.name)
    if not match:
        return None
    try:
        return dt.date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
    except ValueError:
        return None


def log_weeks(log_dir: Path) -> dict[dt.date, list[Path]]:
    """Week (Monday) -> the log files that name it, in name order."""
    weeks: dict[dt.date, list[Path]] = {}
    if log_dir.is_dir():
        for path in sorted(log_dir.iterdir()):
            monday = week_of_file(path) if path.is_file() else None
            if monday is not None:
                weeks.setdefault(monday, []).append(path)
    return weeks


def week_key(monday: dt.date) -> str:
    return monday.isoformat()


def search_weeks_for(log_dir: Path, today: dt.date | None = None) -> dg.WeeklyPartitionsDefinition:
    """Weeks from the first to the last week the log names. A log with no week files yet shows the
    current week only; a live log (last week within a month of today) stays open-ended, so new weeks
    appear as time passes."""
    today = today or dt.date.today()
    this_monday = today - dt.timedelta(days=today.weekday())
    weeks = sorted(log_weeks(log_dir))
    first, last = (weeks[0], weeks[-1]) if weeks else (this_monday, this_monday)
    live = (this_monday - last).days <= 28
    end = None if live else (last + dt.timedelta(days=7)).isoformat()
    return dg.WeeklyPartitionsDefinition(start_date=first.isoformat(), end_date=end, day_offset=1)


def release_key(number: int) -> str:
    return f"r{number:03d}"


def next_release_key(existing: list[str]) -> str:
    """One past the highest release number in use."""
    numbers = [int(m.group(1)) for m in (RELEASE_KEY.match(k) for k in existing) if m]
    return release_key(max(numbers, default=0) + 1)


def release_order(key: str) -> int:
    match = RELEASE_KEY.match(key)
    return int(match.group(1)) if match else -1


def all_drops_in() -> dg.AssetIn:
    """An input of every drop's partition that exists, as ``{drop: frame}``: a drop still in intake (or
    failed) is skipped."""
    return dg.AssetIn(partition_mapping=dg.AllPartitionMapping(),
                      metadata={"allow_missing_partitions": True, "partition_dict": True})


def run_drops_in() -> dg.AssetIn:
    """An input of the run's own drops as ``{drop: frame}``: one drop, or every drop a single-run
    backfill covers (a release re-scoring them all in one run)."""
    return dg.AssetIn(metadata={"partition_dict": True})


def all_releases_in() -> dg.AssetIn:
    """An input of every materialized release as ``{release: frame}``; the asset picks the one it needs."""
    return dg.AssetIn(partition_mapping=dg.AllPartitionMapping(),
                      metadata={"allow_missing_partitions": True, "partition_dict": True})


def landed_drops(instance: dg.DagsterInstance) -> list[str]:
    """Registered drops in the order they landed (the sensor registers them as they become ready, in
    name order within one tick): the instance keeps its dynamic partitions in insertion order."""
    return list(instance.get_dynamic_partitions(catalog_drops.name))


def concat_partitions(frames, landing_order: list[str]):
    """Every drop's partition as one table (eager or lazy, as given; columns may differ per drop), in
    landing order. A product id that landed in several drops keeps only the rows of its newest drop
    (a retailer re-sending a product updates it), so every asset downstream sees one product once."""
    if not frames:
        return pl.DataFrame()
    rank = {drop: index for index, drop in enumerate(landing_order)}
    keys = sorted(frames, key=lambda drop: (rank.get(drop, len(rank)), drop))
    parts = [frames[key].with_columns(pl.lit(index, pl.Int32).alias(_LANDED)) for index, key in enumerate(keys)]
    table = pl.concat(parts, how="diagonal_relaxed")
    if "product_id" in table.collect_schema().names():
        table = table.filter(pl.col(_LANDED) == pl.col(_LANDED).max().over("product_id"))
    return table.drop(_LANDED)


def superseded_rows(frames, landing_order: list[str]) -> pl.DataFrame:
    """(drop, product_id) of every product a newer drop replaces: what an engine reading the drops'
    files itself (Spark) must leave out to agree with ``concat_partitions``."""
    ids = {drop: frame.select("product_id").unique().with_columns(pl.lit(drop).alias("drop"))
           for drop, frame in frames.items()}
    both = pl.concat([frame.lazy() for frame in ids.values()]) if ids else pl.LazyFrame(
        schema={"product_id": pl.Utf8, "drop": pl.Utf8})
    newest = concat_partitions({d: f.lazy() for d, f in ids.items()}, landing_order).lazy()
    return both.join(newest, on=["drop", "product_id"], how="anti").select("drop", "product_id").collect().sort(
        "drop", "product_id")


_LANDED = "_landing_rank"
