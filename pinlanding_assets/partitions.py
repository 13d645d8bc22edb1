"""Catalog drops are the unit of partitioning: each drop directory is one dynamic partition."""

import dagster as dg

catalog_drops = dg.DynamicPartitionsDefinition(name="catalog_drops")
