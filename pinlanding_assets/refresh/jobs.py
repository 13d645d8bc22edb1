"""Jobs for the CLI and CI, one per stage (``stages.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from pinlanding_assets.refresh.stages import STAGES


def jobs_for(assets: Sequence[dg.AssetsDefinition]) -> list:
    """One job per stage, partitioned as the stage's assets are."""
    by_key = {key: a for a in assets for key in a.keys}
    known = set(by_key)
    jobs = []
    for s in STAGES:
        missing = set(s.assets) - known
        if missing:
            raise ValueError(f"stage {s.name} names assets that do not exist: "
                             f"{sorted(key.to_user_string() for key in missing)}")
        jobs.append(dg.define_asset_job(s.job_name, selection=dg.AssetSelection.assets(*s.assets),
                                        partitions_def=by_key[s.assets[0]].partitions_def, description=s.description))
    return jobs
