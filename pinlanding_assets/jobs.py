"""Jobs: one run per catalog drop for the drop-partitioned assets."""

from collections.abc import Sequence

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from pinlanding_assets.partitions import catalog_drops

CATALOG_DROP_JOB = "catalog_drop_job"
CROSS_DROP_JOB = "cross_drop_job"


def drop_partitioned(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    return [asset for asset in assets if asset.partitions_def == catalog_drops]


def catalog_drop_job(assets: Sequence[dg.AssetsDefinition]) :
    return dg.define_asset_job(
        CATALOG_DROP_JOB,
        selection=dg.AssetSelection.assets(*drop_partitioned(assets)),
        partitions_def=catalog_drops,
        description="Materialize every drop-partitioned asset for one catalog drop.",
    )


def cross_drop_job(assets: Sequence[dg.AssetsDefinition]) -> UnresolvedAssetJobDefinition:
    """The assets built from all drops together (vocabulary, ...): run after the drops' own runs."""
    return dg.define_asset_job(
        CROSS_DROP_JOB,
        selection=dg.AssetSelection.assets(*[a for a in assets if a.partitions_def is None]),
        description="Materialize the assets that combine every catalog drop.",
    )
