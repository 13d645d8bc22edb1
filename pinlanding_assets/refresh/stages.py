"""The stages of the graph, written once, in the order `pinlanding run` materializes them. The jobs
are built from them, and the learning lane takes the release stage; otherwise, under the daemon, each
asset's automation condition says when it refreshes. Nothing here imports the code location, so the
CLI can read it before the search log folder (which fixes the week partitions) exists."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from pinlanding_assets.refresh import keys as k


@dataclass(frozen=True)
class Stage:
    name: str
    job_name: str
    assets: tuple[dg.AssetKey, ...]
    description: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(key.to_user_string() for key in self.assets)


STAGES = (
    Stage("intake", "drop_intake_job",
          (k.CATALOG_PRODUCTS, k.CATALOG_QUARANTINE, k.CATALOG_GROUND_TRUTH, k.CATALOG_IMAGE_FEATURES, k.CATALOG_PROFILE,
           k.VLM_ATTRIBUTES, k.VLM_QUARANTINE),
          "Per drop: catalog, image evidence, profile, VLM stage."),
    Stage("release", "release_job",
          (k.CURATED_VOCABULARY, k.DUAL_ENCODER, k.ATTRIBUTE_EMBEDDINGS, k.ATTRIBUTE_EMBEDDING_REJECTIONS,
           k.MODEL_RELEASE),
          "Per release: vocabulary, dual encoder, attribute embeddings, release record."),
    Stage("scoring", "drop_scoring_job",
          (k.PRODUCT_EMBEDDINGS, k.ATTRIBUTE_ASSIGNMENTS, k.ASSIGNMENT_QUARANTINE),
          "Per drop, with the release in service: product embeddings and assignments."),
    Stage("demand", "search_demand_job", (k.QUERY_INTENTS, k.SEARCH_LOG_QUARANTINE, k.DEMAND_WINDOW),
          "Per week of the search log: intents and the rolling demand window."),
    Stage("publish", "publish_job",
          (k.DEMAND_INTENTS, k.COLLECTIONS, k.ATTRIBUTE_RELIABILITY, k.DEMAND_GAPS, k.PUBLISH_EXCLUSIONS,
           k.COLLECTION_FEEDS, k.SEARCH_BASELINE, k.COLLECTION_COMPARISON, k.LANDING_PAGES),
          "Per release, once every drop is scored with it: collections, Spark feeds, baseline, comparison, pages."),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)


def stage(name: str) -> Stage:
    return next(s for s in STAGES if s.name == name)


def stage_of(asset: dg.AssetKey) -> Stage:
    return next(s for s in STAGES if asset in s.assets)
