"""Jobs for the CLI and CI, one per stage (``stages.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from pinlanding_assets.partitions import catalog_drops, model_releases, search_weeks
from pinlanding_assets.refresh.stages import STAGES

PARTITIONS = {"drops": catalog_drops, "release": model_releases, "weeks": search_weeks}


def jobs_for(assets: Sequence[dg.AssetsDefinition]) -> list:
    known = {key for a in assets for key in a.keys}
    jobs = []
    for s in STAGES:
        missing = set(s.assets) - known
        if missing:
            raise ValueError(f"stage {s.name} names assets that do not exist: "
                             f"{sorted(key.to_user_string() for key in missing)}")
        jobs.append(dg.define_asset_job(s.job_name, selection=dg.AssetSelection.assets(*s.assets),
                                        partitions_def=PARTITIONS[s.partitions], description=s.description))
    return jobs
