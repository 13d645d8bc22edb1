"""Every asset key of the graph, named once: the stages, conditions, release rules, sensors and the CLI
refer to assets through these, so a renamed asset breaks at import, not in a daemon tick."""

from __future__ import annotations

import dagster as dg

# per drop: intake
CATALOG_PRODUCTS = dg.AssetKey("catalog_products")
CATALOG_QUARANTINE = dg.AssetKey("catalog_quarantine")
CATALOG_GROUND_TRUTH = dg.AssetKey("catalog_ground_truth")
CATALOG_IMAGE_FEATURES = dg.AssetKey("catalog_image_features")
CATALOG_PROFILE = dg.AssetKey("catalog_profile")
VLM_ATTRIBUTES = dg.AssetKey("raw_vlm_attributes")
VLM_QUARANTINE = dg.AssetKey("raw_vlm_quarantine")
# per release
CURATED_VOCABULARY = dg.AssetKey("curated_vocabulary")
DUAL_ENCODER = dg.AssetKey("dual_encoder")
ATTRIBUTE_EMBEDDINGS = dg.AssetKey("attribute_embeddings")
ATTRIBUTE_EMBEDDING_REJECTIONS = dg.AssetKey("attribute_embedding_rejections")
MODEL_RELEASE = dg.AssetKey("model_release")
# per drop: scoring with the release in service
PRODUCT_EMBEDDINGS = dg.AssetKey("product_embeddings")
ATTRIBUTE_ASSIGNMENTS = dg.AssetKey("attribute_assignments")
ASSIGNMENT_QUARANTINE = dg.AssetKey("assignment_quarantine")
# per week of the search log
SEARCH_LOG = dg.AssetKey("search_log")
QUERY_INTENTS = dg.AssetKey("query_intents")
SEARCH_LOG_QUARANTINE = dg.AssetKey("search_log_quarantine")
DEMAND_WINDOW = dg.AssetKey("demand_window")
# per release: the publish
MERCHANDISING_OVERRIDES = dg.AssetKey("merchandising_overrides")
DEMAND_INTENTS = dg.AssetKey("demand_intents")
COLLECTIONS = dg.AssetKey("collections")
ATTRIBUTE_RELIABILITY = dg.AssetKey("attribute_reliability")
DEMAND_GAPS = dg.AssetKey("demand_gaps")
PUBLISH_EXCLUSIONS = dg.AssetKey("publish_exclusions")
COLLECTION_FEEDS = dg.AssetKey("collection_feeds")
SEARCH_BASELINE = dg.AssetKey("search_baseline")
COLLECTION_COMPARISON = dg.AssetKey("collection_comparison")
LANDING_PAGES = dg.AssetKey("landing_pages")
