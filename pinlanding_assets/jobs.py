"""Jobs. A drop's run happens in two halves around the assets that combine all drops, then publishing:

    catalog_drop_job (per drop)  ->  cross_drop_job (vocabulary, dual encoder, ...)  ->  drop_scoring_job (per drop)
    ->  publish_job (collections, feeds, baseline, comparison, landing pages)
"""

from collections.abc import Sequence

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from pinlanding_assets.partitions import catalog_drops

CATALOG_DROP_JOB = "catalog_drop_job"
CROSS_DROP_JOB = "cross_drop_job"
DROP_SCORING_JOB = "drop_scoring_job"
PUBLISH_JOB = "publish_job"


def _selections(assets: Sequence[dg.AssetsDefinition]) -> tuple[dg.AssetSelection, ...]:
    partitioned = dg.AssetSelection.assets(*[a for a in assets if a.partitions_def == catalog_drops])
    unpartitioned = dg.AssetSelection.assets(*[a for a in assets if a.partitions_def is None])
    scoring = partitioned & unpartitioned.downstream()
    publish = unpartitioned & scoring.downstream()
    cross = unpartitioned - publish
    return partitioned - scoring, cross, scoring & cross.downstream(), publish


def jobs_for(assets: Sequence[dg.AssetsDefinition]) -> list[UnresolvedAssetJobDefinition]:
    intake, cross, scoring, publish = _selections(assets)
    return [
        dg.define_asset_job(CATALOG_DROP_JOB, selection=intake, partitions_def=catalog_drops,
                            description="Per drop, before the cross-drop assets: catalog, image evidence, VLM stage."),
        dg.define_asset_job(CROSS_DROP_JOB, selection=cross,
                            description="The assets that combine every drop: vocabulary, dual encoder, ..."),
        dg.define_asset_job(DROP_SCORING_JOB, selection=scoring, partitions_def=catalog_drops,
                            description="Per drop, after the cross-drop assets: embeddings and assignments."),
        dg.define_asset_job(PUBLISH_JOB, selection=publish,
                            description="After every drop is scored: collections, Spark feeds, baseline, comparison, pages."),
    ]
