"""The stages of the graph, written once, in the order `pinlanding run` materializes them. The jobs
are built from them; under the daemon nothing needs them (each asset's automation condition says when
it refreshes). Nothing here imports the code location, so the CLI can read it before the search log
folder (which fixes the week partitions) exists."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    job_name: str
    partitions: str  # drops | release | weeks
    assets: tuple[str, ...]
    description: str


STAGES = (
    Stage("intake", "drop_intake_job", "drops",
          ("catalog_products", "catalog_quarantine", "catalog_labels", "catalog_image_features", "catalog_profile",
           "raw_vlm_attributes", "raw_vlm_quarantine"),
          "Per drop: catalog, image evidence, profile, VLM stage."),
    Stage("release", "release_job", "release",
          ("curated_vocabulary", "dual_encoder", "attribute_embeddings", "attribute_embedding_rejections",
           "model_release"),
          "Per release: vocabulary, dual encoder, attribute embeddings, release record."),
    Stage("scoring", "drop_scoring_job", "drops", ("product_embeddings", "attribute_assignments", "assignment_quarantine"),
          "Per drop, with the release in service: product embeddings and assignments."),
    Stage("demand", "search_demand_job", "weeks", ("query_intents", "search_log_quarantine", "demand_window"),
          "Per week of the search log: intents and the rolling demand window."),
    Stage("publish", "publish_job", "release",
          ("demand_intents", "collections", "attribute_reliability", "demand_gaps", "publish_exclusions", "collection_feeds",
           "search_baseline", "collection_comparison", "landing_pages"),
          "Per release, once every drop is scored with it: collections, Spark feeds, baseline, comparison, pages."),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)


def stage(name: str) -> Stage:
    return next(s for s in STAGES if s.name == name)


def stage_of(asset: str) -> Stage:
    return next(s for s in STAGES if asset in s.assets)
