"""Catalog drops are the unit of partitioning: each drop directory is one dynamic partition."""

import dagster as dg
import polars as pl

catalog_drops = dg.DynamicPartitionsDefinition(name="catalog_drops")


def concat_partitions(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """All drops of a partitioned asset as one table, in drop order (columns may differ per drop)."""
    return pl.concat([frames[key] for key in sorted(frames)], how="diagonal_relaxed")
