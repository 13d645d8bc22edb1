"""Quality gates on the catalog: a drop that quarantines too much is almost certainly a broken export."""


import dagster as dg
import polars as pl

from pinlanding_assets.partitions import catalog_drops
from pinlanding_assets.settings import QualityGates


@dg.asset_check(
    asset="catalog_products",
    additional_ins={"catalog_quarantine": dg.AssetIn()},
    partitions_def=catalog_drops,
    blocking=True,
)
def quarantine_rate_within_bounds(quality_gates: QualityGates, catalog_products: pl.DataFrame,
                                  catalog_quarantine: pl.DataFrame) -> dg.AssetCheckResult:
    """Fails (and blocks downstream) when more than the gate's share of rows (PINLANDING_MAX_QUARANTINE_RATE)
    were quarantined."""
    total = catalog_products.height + catalog_quarantine.height
    rate = catalog_quarantine.height / total if total else 1.0
    return dg.AssetCheckResult(
        passed=bool(total) and rate <= quality_gates.max_quarantine_rate,
        metadata={"quarantine_rate": round(rate, 4), "threshold": quality_gates.max_quarantine_rate, "rows": total},
    )
