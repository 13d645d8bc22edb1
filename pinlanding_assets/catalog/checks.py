"""Quality gates on the catalog: a drop that quarantines too much is almost certainly a broken export."""


import dagster as dg
import polars as pl

from pinlanding_assets.partitions import catalog_drops
from pinlanding_assets.settings import setting_float

MAX_QUARANTINE_RATE = setting_float("PINLANDING_MAX_QUARANTINE_RATE")


@dg.asset_check(
    asset="catalog_products",
    additional_ins={"catalog_quarantine": dg.AssetIn()},
    partitions_def=catalog_drops,
    blocking=True,
)
def quarantine_rate_within_bounds(catalog_products: pl.DataFrame, catalog_quarantine: pl.DataFrame) -> dg.AssetCheckResult:
    """Fails (and blocks downstream) when more than PINLANDING_MAX_QUARANTINE_RATE of rows were quarantined."""
    total = catalog_products.height + catalog_quarantine.height
    rate = catalog_quarantine.height / total if total else 1.0
    return dg.AssetCheckResult(
        passed=bool(total) and rate <= MAX_QUARANTINE_RATE,
        metadata={"quarantine_rate": round(rate, 4), "threshold": MAX_QUARANTINE_RATE, "rows": total},
    )
