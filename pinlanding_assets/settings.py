"""Every PinLanding setting, read from the environment here and nowhere else (the README's
Configuration table lists them). Values are read when asked for, not at import, so tests can point
them elsewhere; ``export_default`` sets what child processes (Spark workers, llama.cpp, the HF hub)
read themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CPUS = str(os.cpu_count() or 2)

# name -> default (None: unset unless given); paths under the data dir are resolved in get_paths()
DEFAULTS: dict[str, str | None] = {
    "PINLANDING_DATA_DIR": str(PROJECT_ROOT / "data"),
    "PINLANDING_LANDING_DIR": None,
    "PINLANDING_WAREHOUSE_DIR": None,
    "PINLANDING_SEARCH_LOG_DIR": None,
    "PINLANDING_SHARED_DATA": str(PROJECT_ROOT.parent / "shared" / "data"),
    "PINLANDING_MODEL_CACHE": None,
    "PINLANDING_DEPLOYMENT": None,
    "RAY_ADDRESS": None,
    "PINLANDING_SPARK_MASTER": None,
    "PINLANDING_RAY_CPUS": CPUS,
    "PINLANDING_MAX_QUARANTINE_RATE": "0.2",
    "PINLANDING_ATTRIBUTE_SAMPLE": "budget",
    "PINLANDING_ATTRIBUTE_BUDGET_S": "120",
    "PINLANDING_ATTRIBUTE_PRODUCTS_PER_S": "0.66",
    "PINLANDING_ATTRIBUTE_ACTORS": "1",
    "PINLANDING_ATTRIBUTE_BACKEND": "offline",
    "PINLANDING_LLM": None,
    "PINLANDING_JUDGE_LLM": None,
    "PINLANDING_LLM_THREADS": CPUS,
    "PINLANDING_LLM_SLOTS": "1",
    "PINLANDING_JUDGE_SLOTS": "1",
    "PINLANDING_VLLM_URL": None,
    "PINLANDING_VLLM_MODEL": None,
    "PINLANDING_VLLM_API_KEY": "EMPTY",
    "PINLANDING_VLM_CHECKPOINT": None,
    "PINLANDING_MIN_SUPPORT": "2",
    "PINLANDING_JUDGE_THRESHOLD": "0.5",
    "PINLANDING_ENCODER": "pinlanding-effnetlite0-minilm",
    "PINLANDING_ENCODER_PRODUCTS": "3000",
    "PINLANDING_UNFREEZE_IMAGE_BLOCKS": "0",
    "PINLANDING_MIN_FUSED_RECALL": "0.97",
    "PINLANDING_MIN_IMAGE_RECALL": "0.85",
    "PINLANDING_MAX_COLLECTIONS": "150",
    "PINLANDING_MIN_FEED_SIZE": "10",
    "PINLANDING_MAX_FEED_SIZE": "100",
    "PINLANDING_MIN_PRECISION_AT_10": "0.5",
    "PINLANDING_SITE_URL": "http://localhost:8000/",
    "PINLANDING_DEMAND_WEEKS": "14",
    "PINLANDING_RELEASE_NEW_LABEL_SHARE": "0.5",
    "PINLANDING_RELEASE_MAX_AGE_DAYS": "7",
    "DAGSTER_HOME": str(PROJECT_ROOT / ".dagster_home"),
}


def setting(name: str) -> str | None:
    """The value of a declared setting, or its default."""
    if name not in DEFAULTS:
        raise KeyError(f"{name} is not a PinLanding setting: declare it in settings.DEFAULTS")
    return os.environ.get(name, DEFAULTS[name])


def setting_int(name: str) -> int:
    return int(setting(name))


def setting_float(name: str) -> float:
    return float(setting(name))


def export_default(name: str, value: str) -> str:
    """Set an environment variable for this process and its children unless it is set already."""
    return os.environ.setdefault(name, value)


@dataclass(frozen=True)
class Paths:
    """Directories the pipeline reads from and writes to."""

    data_dir: Path
    landing_dir: Path
    warehouse_dir: Path
    shared_data_dir: Path
    search_log_dir: Path
    model_cache_dir: Path

    @property
    def fashion_catalog_dir(self) -> Path:
        return self.shared_data_dir / "fashion-product-images"

    def partition_path(self, asset: str, partition: str) -> Path:
        """Where the warehouse keeps one partition of an asset (what the IO manager reads and writes)."""
        return self.warehouse_dir / asset / f"{partition}.parquet"

    def staging_path(self, asset: str, partition: str) -> Path:
        """Where an engine writes a partition before it is swapped in (same file system as the warehouse)."""
        return self.warehouse_dir / ".staging" / asset / partition

    @property
    def shared_search_log(self) -> Path:
        """The demo's per-search log (user_id, query, searched_at), split into week files by make-drops."""
        return self.shared_data_dir / "aol-fashion-queries" / "aol_fashion_searches.tsv"


def get_paths() -> Paths:
    """Resolve paths now (not at import) so tests can point them at temporary directories."""
    data_dir = Path(setting("PINLANDING_DATA_DIR")).resolve()
    return Paths(
        data_dir=data_dir,
        landing_dir=Path(setting("PINLANDING_LANDING_DIR") or data_dir / "landing").resolve(),
        warehouse_dir=Path(setting("PINLANDING_WAREHOUSE_DIR") or data_dir / "warehouse").resolve(),
        shared_data_dir=Path(setting("PINLANDING_SHARED_DATA")).resolve(),
        search_log_dir=Path(setting("PINLANDING_SEARCH_LOG_DIR") or data_dir / "search_log").resolve(),
        model_cache_dir=Path(setting("PINLANDING_MODEL_CACHE") or data_dir / "models"),
    )


@dataclass(frozen=True)
class RefreshSettings:
    """How the graph refreshes itself (Declarative Automation and the release sensor)."""

    demand_weeks: int  # weeks in the rolling demand window collections read
    release_new_label_share: float  # cut a release once this share of labelled products is new to it
    release_max_age_days: float  # or once the current release is this old and anything is new


def get_refresh_settings() -> RefreshSettings:
    return RefreshSettings(
        demand_weeks=setting_int("PINLANDING_DEMAND_WEEKS"),
        release_new_label_share=setting_float("PINLANDING_RELEASE_NEW_LABEL_SHARE"),
        release_max_age_days=setting_float("PINLANDING_RELEASE_MAX_AGE_DAYS"),
    )
