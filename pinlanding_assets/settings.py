"""Where PinLanding keeps its files, from environment variables with project-local defaults.

One place decides the paths so the CLI, the assets and the tests agree on them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Paths:
    """Directories the pipeline reads from and writes to."""

    data_dir: Path
    landing_dir: Path
    warehouse_dir: Path
    shared_data_dir: Path
    search_log_dir: Path

    @property
    def fashion_catalog_dir(self) -> Path:
        return self.shared_data_dir / "fashion-product-images"

    @property
    def shared_search_log(self) -> Path:
        """The demo's per-search log (user_id, query, searched_at), split into week files by make-drops."""
        return self.shared_data_dir / "aol-fashion-queries" / "aol_fashion_searches.tsv"


def get_paths() -> Paths:
    """Resolve paths now (not at import) so tests can point them at temporary directories."""
    data_dir = Path(os.environ.get("PINLANDING_DATA_DIR", PROJECT_ROOT / "data")).resolve()
    return Paths(
        data_dir=data_dir,
        landing_dir=Path(os.environ.get("PINLANDING_LANDING_DIR", data_dir / "landing")).resolve(),
        warehouse_dir=Path(os.environ.get("PINLANDING_WAREHOUSE_DIR", data_dir / "warehouse")).resolve(),
        shared_data_dir=Path(
            os.environ.get("PINLANDING_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")
        ).resolve(),
        search_log_dir=Path(os.environ.get("PINLANDING_SEARCH_LOG_DIR", data_dir / "search_log")).resolve(),
    )


@dataclass(frozen=True)
class RefreshSettings:
    """How the graph refreshes itself (Declarative Automation and the release sensor)."""

    demand_weeks: int  # weeks in the rolling demand window collections read
    release_new_label_share: float  # cut a release once this share of labelled products is new to it
    release_max_age_days: float  # or once the current release is this old and anything is new


def get_refresh_settings() -> RefreshSettings:
    return RefreshSettings(
        demand_weeks=int(os.environ.get("PINLANDING_DEMAND_WEEKS", "14")),
        release_new_label_share=float(os.environ.get("PINLANDING_RELEASE_NEW_LABEL_SHARE", "0.5")),
        release_max_age_days=float(os.environ.get("PINLANDING_RELEASE_MAX_AGE_DAYS", "7")),
    )
