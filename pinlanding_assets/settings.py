"""Every PinLanding setting, read from the environment here and nowhere else (the README's
Configuration table lists them).

``load_settings()`` resolves them into one typed, frozen ``Settings`` when asked (not at import, so
tests can point them elsewhere). Each entry point (the code location, the CLI) reads them once and
hands them on: to the resources (``deployment.resources_for``), among them the ``project`` resource
through which assets and sensors reach paths and settings, and the ``QualityGates`` the asset checks
share with the assets they check. A run-config field left unset takes its project setting
(``fill_unset``). ``export_library_environment()`` is the one place the process environment is
written: what libraries read themselves (the HF hub, llama.cpp's log level, Dagster).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import dagster as dg
from pydantic import Field

from resources import DEPLOYMENTS
from resources.models import DEFAULT_LLM

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CPUS = str(os.cpu_count() or 2)

# name -> default (None: unset unless given); paths under the data dir are resolved in load_settings()
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
    "PINLANDING_ATTRIBUTE_ACTORS": "1",
    "PINLANDING_ATTRIBUTE_BACKEND": "offline",
    "PINLANDING_LLM": DEFAULT_LLM,
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
    "PINLANDING_MIN_TITLE_TYPE_PRODUCTS": "20",
    "PINLANDING_ENCODER": "pinlanding-effnetlite0-minilm",
    "PINLANDING_ENCODER_PRODUCTS": "3000",
    "PINLANDING_UNFREEZE_IMAGE_BLOCKS": "0",
    "PINLANDING_MIN_FUSED_RECALL": "0.97",
    "PINLANDING_MIN_IMAGE_RECALL": "0.85",
    "PINLANDING_MAX_COLLECTIONS": "5000",
    "PINLANDING_TARGET_PRECISION": "0.9",
    "PINLANDING_MIN_JOINT_CONFIDENCE": "0.5",
    "PINLANDING_MAX_REFINEMENT_SHARE": "0.75",
    "PINLANDING_DUPLICATE_JACCARD": "0.8",
    "PINLANDING_TITLE_LLM_CALLS": "40",
    "PINLANDING_BASELINE_MIN_DEMAND": "2",
    "PINLANDING_MIN_FEED_SIZE": "10",
    "PINLANDING_MAX_FEED_SIZE": "100",
    "PINLANDING_MIN_PRECISION_AT_10": "0.5",
    "PINLANDING_SITE_URL": "http://localhost:8000/",
    "PINLANDING_INDEX_MIN_PRODUCTS": "12",
    "PINLANDING_INDEX_MIN_PRECISION": "0.6",
    "PINLANDING_BURY_OUT_OF_STOCK": "1",
    "PINLANDING_DEMAND_WEEKS": "14",
    "PINLANDING_RELEASE_NEW_LABEL_SHARE": "0.5",
    "PINLANDING_RELEASE_MAX_AGE_DAYS": "7",
    "DAGSTER_HOME": str(PROJECT_ROOT / ".dagster_home"),
    "PINLANDING_POSTGRES_URL": None,
}


class SettingError(ValueError):
    """A setting has a value the pipeline cannot use (the message names the variable)."""


@dataclass(frozen=True)
class Paths:
    """Directories the pipeline reads from and writes to, and the paths derived from them."""

    data_dir: Path
    landing_dir: Path
    warehouse_dir: Path
    shared_data_dir: Path
    search_log_dir: Path
    model_cache_dir: Path

    @property
    def fashion_catalog_dir(self) -> Path:
        return self.shared_data_dir / "fashion-product-images"

    @property
    def shared_search_log(self) -> Path:
        """The demo's per-search log (user_id, query, searched_at), split into week files by make-drops."""
        return self.shared_data_dir / "aol-fashion-queries" / "aol_fashion_searches.tsv"

    @property
    def shared_query_counts(self) -> Path:
        """The demo's aggregated search log (query, count)."""
        return self.shared_data_dir / "aol-fashion-queries" / "aol_fashion_query_counts.tsv"

    @property
    def open_clip_cache(self) -> Path:
        """Where the dual encoder's open_clip model config is registered."""
        return self.model_cache_dir / "open_clip"

    @property
    def checkpoint_dir(self) -> Path:
        """Dual-encoder checkpoints, one file per release (beside the warehouse's tables)."""
        return self.warehouse_dir / "models" / "dual_encoder"

    def feed_rows_dir(self, release: str) -> Path:
        """A release's feed rows: Parquet written by Spark, partitioned by anchor (category)."""
        return self.warehouse_dir / "published_feeds" / release

    @property
    def title_cache(self) -> Path:
        return self.warehouse_dir / "cache" / "collection_titles.parquet"

    @property
    def site_dir(self) -> Path:
        return self.data_dir / "site"

    @property
    def overrides_file(self) -> Path:
        """The merchandisers' reviewed file of pins, boosts, buries, exclusions, renames and blocks."""
        return self.data_dir / "merchandising.toml"

    def asset_dir(self, asset: str) -> Path:
        """Where the warehouse keeps an asset's partitions (the IO manager's layout: one per asset key)."""
        return self.warehouse_dir / asset

    def partition_path(self, asset: str, partition: str) -> Path:
        """Where the warehouse keeps one partition of an asset (what the IO manager reads and writes)."""
        return self.asset_dir(asset) / f"{partition}.parquet"

    def staging_path(self, asset: str, partition: str) -> Path:
        """Where an engine writes a partition before it is swapped in (same file system as the warehouse)."""
        return self.warehouse_dir / ".staging" / asset / partition


@dataclass(frozen=True)
class ModelSettings:
    """Which models the attribute stage and the judge use (handed to the ``ModelBackends`` resource)."""

    attribute_backend: str
    llm: str
    judge_llm: str
    llm_threads: int
    llm_slots: int
    judge_slots: int
    vllm_url: str | None
    vllm_model: str | None
    vllm_api_key: str
    vlm_checkpoint: str | None


@dataclass(frozen=True)
class AttributeSettings:
    """The VLM stage's sample and vocabulary curation (run-config defaults)."""

    sample: str
    budget_s: float
    actors: int
    min_support: int
    judge_threshold: float
    min_title_type_products: int  # titles that must end in a product type before it is a candidate phrase


@dataclass(frozen=True)
class EncoderSettings:
    model_name: str
    max_products: int
    unfreeze_image_blocks: int


@dataclass(frozen=True)
class RefreshSettings:
    """How the graph refreshes itself (Declarative Automation and the release sensor)."""

    demand_weeks: int  # weeks in the rolling demand window collections read
    release_new_label_share: float  # cut a release once this share of labelled products is new to it
    release_max_age_days: float  # or once the current release is this old and anything is new


@dataclass(frozen=True)
class CollectionSettings:
    """The gates a topic passes before it is published (README: "Collection gates")."""

    target_precision: float  # an attribute defines collections only when its estimated precision reaches this
    min_joint_confidence: float  # a product shows on a page only when every attribute is this likely right
    max_refinement_share: float  # a refinement keeping more of its parent's products is an alias of it
    duplicate_jaccard: float  # pages whose product sets or feeds overlap this much are one page
    title_llm_calls: int  # LLM title calls per publish; past them, template titles until a later publish
    baseline_min_demand: int  # distinct users a query group needs to be a search-log baseline collection


@dataclass(frozen=True)
class SiteSettings:
    """How the landing pages are published (README: "For retailers")."""

    url: str  # where the site is served: sitemap, canonical links, JSON-LD
    min_indexed_products: int  # a page with fewer products is published with noindex and left out of the sitemap
    min_indexed_precision: float  # so is a page whose estimated precision (its attributes' product) is lower
    bury_out_of_stock: bool  # out-of-stock products go to the end of their feeds


class QualityGates(dg.ConfigurableResource):
    """The bounds the asset checks hold the graph to, shared by the assets that build to them and the
    checks that verify them (a check never reads its bounds back from a run's metadata)."""

    max_quarantine_rate: float = Field(description="Most rows a drop may quarantine before intake is blocked.")
    min_fused_recall: float = Field(description="Floor of the dual encoder's holdout Recall@10 (fused).")
    min_image_recall: float = Field(description="Floor of the image-only holdout Recall@10.")
    min_feed_size: int = Field(description="Fewest products a published feed may hold.")
    max_feed_size: int = Field(description="Most products a feed holds.")
    min_precision_at_10: float = Field(description="Floor of the content-first collections' precision@10.")


@dataclass(frozen=True)
class Settings:
    paths: Paths
    dagster_home: Path
    postgres_url: str | None  # the instance's storage in PostgreSQL (production); None: sqlite in dagster_home
    deployment: str  # local | cluster
    ray_address: str | None
    spark_master: str | None
    ray_cpus: int
    models: ModelSettings
    attributes: AttributeSettings
    encoder: EncoderSettings
    max_collections: int  # a safety limit on published collections, not a target
    collections: CollectionSettings
    site: SiteSettings
    refresh: RefreshSettings
    gates: QualityGates


def _reader(environ: Mapping[str, str]):
    def value(name: str) -> str | None:
        if name not in DEFAULTS:
            raise KeyError(f"{name} is not a PinLanding setting: declare it in settings.DEFAULTS")
        return environ.get(name) or DEFAULTS[name]

    def number(name: str, kind: type, low: float, high: float | None = None):
        """The setting as ``kind``, refused unless ``low <= value <= high`` (no upper bound when None)."""
        raw = value(name)
        try:
            parsed = kind(raw)
        except (TypeError, ValueError):
            raise SettingError(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}") from None
        if not (low <= parsed <= (math.inf if high is None else high)):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise SettingError(f"{name}={raw!r} is out of range: it must be {bounds}")
        return parsed

    return value, number


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting from ``environ`` (the process environment by default)."""
    value, number = _reader(os.environ if environ is None else environ)
    data_dir = Path(value("PINLANDING_DATA_DIR")).resolve()
    paths = Paths(
        data_dir=data_dir,
        landing_dir=Path(value("PINLANDING_LANDING_DIR") or data_dir / "landing").resolve(),
        warehouse_dir=Path(value("PINLANDING_WAREHOUSE_DIR") or data_dir / "warehouse").resolve(),
        shared_data_dir=Path(value("PINLANDING_SHARED_DATA")).resolve(),
        search_log_dir=Path(value("PINLANDING_SEARCH_LOG_DIR") or data_dir / "search_log").resolve(),
        model_cache_dir=Path(value("PINLANDING_MODEL_CACHE") or data_dir / "models").resolve(),
    )
    deployment = value("PINLANDING_DEPLOYMENT")
    if deployment and deployment not in DEPLOYMENTS:
        raise SettingError(f"PINLANDING_DEPLOYMENT={deployment!r}: expected one of {DEPLOYMENTS}")
    if not deployment:
        deployment = "cluster" if value("RAY_ADDRESS") or value("PINLANDING_SPARK_MASTER") else "local"
    llm = value("PINLANDING_LLM")
    settings = Settings(
        paths=paths,
        dagster_home=Path(value("DAGSTER_HOME")).resolve(),
        postgres_url=value("PINLANDING_POSTGRES_URL"),
        deployment=deployment,
        ray_address=value("RAY_ADDRESS"),
        spark_master=value("PINLANDING_SPARK_MASTER"),
        ray_cpus=number("PINLANDING_RAY_CPUS", int, 1),
        models=ModelSettings(
            attribute_backend=value("PINLANDING_ATTRIBUTE_BACKEND"),
            llm=llm,
            judge_llm=value("PINLANDING_JUDGE_LLM") or llm,
            llm_threads=number("PINLANDING_LLM_THREADS", int, 1),
            llm_slots=number("PINLANDING_LLM_SLOTS", int, 1),
            judge_slots=number("PINLANDING_JUDGE_SLOTS", int, 1),
            vllm_url=value("PINLANDING_VLLM_URL"),
            vllm_model=value("PINLANDING_VLLM_MODEL"),
            vllm_api_key=value("PINLANDING_VLLM_API_KEY"),
            vlm_checkpoint=value("PINLANDING_VLM_CHECKPOINT"),
        ),
        attributes=AttributeSettings(
            sample=value("PINLANDING_ATTRIBUTE_SAMPLE"),
            budget_s=number("PINLANDING_ATTRIBUTE_BUDGET_S", float, 1),
            actors=number("PINLANDING_ATTRIBUTE_ACTORS", int, 1),
            min_support=number("PINLANDING_MIN_SUPPORT", int, 1),
            judge_threshold=number("PINLANDING_JUDGE_THRESHOLD", float, 0, 1),
            min_title_type_products=number("PINLANDING_MIN_TITLE_TYPE_PRODUCTS", int, 1),
        ),
        encoder=EncoderSettings(
            model_name=value("PINLANDING_ENCODER"),
            max_products=number("PINLANDING_ENCODER_PRODUCTS", int, 100),
            unfreeze_image_blocks=number("PINLANDING_UNFREEZE_IMAGE_BLOCKS", int, 0, 7),
        ),
        max_collections=number("PINLANDING_MAX_COLLECTIONS", int, 1),
        collections=CollectionSettings(
            target_precision=number("PINLANDING_TARGET_PRECISION", float, 0, 1),
            min_joint_confidence=number("PINLANDING_MIN_JOINT_CONFIDENCE", float, 0, 1),
            max_refinement_share=number("PINLANDING_MAX_REFINEMENT_SHARE", float, 0, 1),
            duplicate_jaccard=number("PINLANDING_DUPLICATE_JACCARD", float, 0, 1),
            title_llm_calls=number("PINLANDING_TITLE_LLM_CALLS", int, 0),
            baseline_min_demand=number("PINLANDING_BASELINE_MIN_DEMAND", int, 1),
        ),
        site=SiteSettings(
            url=value("PINLANDING_SITE_URL"),
            min_indexed_products=number("PINLANDING_INDEX_MIN_PRODUCTS", int, 0),
            min_indexed_precision=number("PINLANDING_INDEX_MIN_PRECISION", float, 0, 1),
            bury_out_of_stock=bool(number("PINLANDING_BURY_OUT_OF_STOCK", int, 0, 1)),
        ),
        refresh=RefreshSettings(
            demand_weeks=number("PINLANDING_DEMAND_WEEKS", int, 1),
            release_new_label_share=number("PINLANDING_RELEASE_NEW_LABEL_SHARE", float, 0, 1),
            release_max_age_days=number("PINLANDING_RELEASE_MAX_AGE_DAYS", float, 0),
        ),
        gates=QualityGates(
            max_quarantine_rate=number("PINLANDING_MAX_QUARANTINE_RATE", float, 0, 1),
            min_fused_recall=number("PINLANDING_MIN_FUSED_RECALL", float, 0, 1),
            min_image_recall=number("PINLANDING_MIN_IMAGE_RECALL", float, 0, 1),
            min_feed_size=number("PINLANDING_MIN_FEED_SIZE", int, 1),
            max_feed_size=number("PINLANDING_MAX_FEED_SIZE", int, 1),
            min_precision_at_10=number("PINLANDING_MIN_PRECISION_AT_10", float, 0, 1),
        ),
    )
    if settings.gates.min_feed_size > settings.gates.max_feed_size:
        raise SettingError(f"PINLANDING_MIN_FEED_SIZE={settings.gates.min_feed_size} is above "
                           f"PINLANDING_MAX_FEED_SIZE={settings.gates.max_feed_size}: a feed could never be published")
    return settings


ConfigT = TypeVar("ConfigT", bound=dg.Config)

# How assets and sensors ask for the project's settings: ``project: ProjectSettings`` (a resource).
ProjectSettings = dg.ResourceParam[Settings]


def fill_unset(config: ConfigT, **settings: object) -> ConfigT:
    """``config`` with every field left unset (None) taken from the project's ``settings``: a run's
    config overrides a setting for that run, and the settings (read once) hold the defaults."""
    return config.model_copy(update={name: value for name, value in settings.items() if getattr(config, name) is None})


def get_paths() -> Paths:
    """The paths part of the settings (resolved now, so tests can point them at temporary directories)."""
    return load_settings().paths


# What third-party libraries read from the process environment, set (unless already set) before
# they start: the HF hub never goes online, llama.cpp is quiet.
LIBRARY_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "LLAMA_LOG_VERBOSITY": "0",
}


def export_library_environment(dagster_home: Path | None = None) -> None:
    """Set the variables libraries and child processes (Ray workers, llama.cpp, the Dagster CLI) read
    themselves. Called once by each entry point (the code location, the CLI)."""
    for name, default in LIBRARY_ENVIRONMENT.items():
        os.environ.setdefault(name, default)
    if dagster_home is not None:
        os.environ["DAGSTER_HOME"] = str(dagster_home)
