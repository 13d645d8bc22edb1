"""Encoder assets: the trained dual encoder, attribute and product embeddings (Ray), assignments."""

import json
import os
import time

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from pinlanding_assets.encoder.assignments import assign, calibrate_thresholds
from pinlanding_assets.encoder.embeddings import (
    embed_phrases_with_ray,
    embed_products_with_ray,
    phrase_rejection,
)
from pinlanding_assets.encoder.evaluation import evaluate_encoders
from pinlanding_assets.encoder.model import DualEncoder, EncoderSpec, save_checkpoint, spec_from_record
from pinlanding_assets.encoder.training import (
    TrainingConfig,
    build_feature_cache,
    split_of,
    title_matches,
    train_heads,
    vlm_pairs,
)
from pinlanding_assets.metadata import figure_markdown, histogram_markdown, table_preview
from pinlanding_assets.partitions import catalog_drops, concat_partitions
from pinlanding_assets.settings import get_paths
from resources.models import open_clip_cache
from resources.ray_pool import RayPool

OWNERS = ["team:relevance"]
MIN_FUSED_RECALL = float(os.environ.get("PINLANDING_MIN_FUSED_RECALL", "0.97"))
MIN_IMAGE_RECALL = float(os.environ.get("PINLANDING_MIN_IMAGE_RECALL", "0.85"))


class DualEncoderConfig(dg.Config):
    model_name: str = Field(default_factory=lambda: os.environ.get("PINLANDING_ENCODER", "pinlanding-effnetlite0-minilm"))
    max_products: int = Field(default_factory=lambda: int(os.environ.get("PINLANDING_ENCODER_PRODUCTS", "3000")))
    epochs: int = 80
    seed: int = 0
    image_weight: float = 0.5
    unfreeze_image_blocks: int = Field(
        default_factory=lambda: int(os.environ.get("PINLANDING_UNFREEZE_IMAGE_BLOCKS", "0")),
        description="also train the last N stages of the image trunk (0: heads only, on cached features)")


def _loss_plot(report) -> dg.MarkdownMetadataValue:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, recall_axis) = plt.subplots(1, 2, figsize=(10, 3.5))
    loss_axis.plot(report.train_loss, label="train")
    loss_axis.plot(report.validation_loss, label="validation")
    loss_axis.set_title("loss")
    loss_axis.legend()
    recall_axis.plot(report.validation_recall_at_10)
    recall_axis.axvline(report.best_epoch - 1, linestyle="--", color="grey")
    recall_axis.set_title("validation Recall@10 (pseudo-labels)")
    return figure_markdown(figure)


@dg.asset(
    ins={"catalog_products": dg.AssetIn(), "catalog_image_features": dg.AssetIn(), "catalog_labels": dg.AssetIn(),
         "raw_vlm_attributes": dg.AssetIn(), "curated_vocabulary": dg.AssetIn()},
    group_name="encoder", kinds={"pytorch", "parquet"}, owners=OWNERS,
)
def dual_encoder(
    config: DualEncoderConfig,
    catalog_products: dict[str, pl.DataFrame],
    catalog_image_features: dict[str, pl.DataFrame],
    catalog_labels: dict[str, pl.DataFrame],
    raw_vlm_attributes: dict[str, pl.DataFrame],
    curated_vocabulary: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """CLIP-style dual encoder (open_clip: EfficientNet-Lite0 image tower, MiniLM text tower) trained
    contrastively on VLM attributes and title phrases; versioned checkpoint; evaluated on a holdout."""
    started = time.perf_counter()
    products = concat_partitions(catalog_products).join(
        concat_partitions(catalog_image_features).select("product_id", "is_blank"), on="product_id", how="left")
    pairs = pl.concat([vlm_pairs(concat_partitions(raw_vlm_attributes), curated_vocabulary),
                       title_matches(products, curated_vocabulary)]).unique().sort(["product_id", "attribute_id"])
    spec = EncoderSpec(model_name=config.model_name, image_weight=config.image_weight, seed=config.seed)
    training = TrainingConfig(seed=config.seed, max_products=config.max_products, epochs=config.epochs,
                              unfreeze_image_blocks=config.unfreeze_image_blocks)
    encoder = DualEncoder(spec, open_clip_cache())
    cache = build_feature_cache(encoder, products, pairs, curated_vocabulary, training)
    report = train_heads(encoder, cache, training)

    import torch

    valid = torch.tensor([s == "validation" for s in cache.splits])
    with torch.no_grad():
        index = valid.nonzero().squeeze(-1)
        scores = (encoder.fuse(cache.image_vectors(encoder, index), encoder.text_head(cache.title[index]),
                               cache.has_image[index]) @ encoder.text_head(cache.phrases).T).numpy()
    thresholds = calibrate_thresholds(scores, cache.positives[index].numpy(), cache.attribute_ids)

    import open_clip

    preprocess_cfg = open_clip.get_model_preprocess_cfg(encoder.model)
    checkpoint_dir = get_paths().warehouse_dir / "models" / "dual_encoder"
    staging = checkpoint_dir / "latest.pt"
    version = save_checkpoint(encoder.model, spec, staging, {"thresholds": thresholds, "preprocess_cfg": preprocess_cfg})
    checkpoint = checkpoint_dir / f"{version}.pt"
    staging.replace(checkpoint)

    holdout = products.filter(pl.col("product_id").map_elements(
        lambda pid: split_of(pid, training.seed, training.holdout_share, training.validation_share) == "holdout",
        return_dtype=pl.Boolean)).sort("product_id")
    metrics = evaluate_encoders(encoder, holdout, concat_partitions(catalog_labels), curated_vocabulary, thresholds)
    summary = pl.DataFrame([{
        "version": version, "checkpoint": str(checkpoint), "spec": spec.to_json(),
        "preprocess_cfg": json.dumps(preprocess_cfg, sort_keys=True), "thresholds": json.dumps(thresholds, sort_keys=True),
        "metrics": json.dumps(metrics, sort_keys=True), "training": json.dumps(report.__dict__, sort_keys=True),
    }])
    return dg.Output(summary, metadata={
        "version": version,
        "checkpoint": dg.MetadataValue.path(str(checkpoint)),
        "model_name": spec.model_name,
        "train_products": report.train_products, "validation_products": report.validation_products,
        "training_pairs": report.pairs, "epochs_run": report.epochs_run, "best_epoch": report.best_epoch,
        "unfrozen_image_blocks": training.unfreeze_image_blocks,
        "validation_recall_at_10": report.best_validation_recall_at_10,
        "holdout_products": holdout.height,
        "fused_recall_at_10": metrics["fused"]["recall_at_10"],
        "image_only_recall_at_10": metrics["image_only"]["recall_at_10"],
        "text_only_recall_at_10": metrics["text_only"]["recall_at_10"],
        "per_facet": dg.MetadataValue.json(metrics),
        "loss_curve": _loss_plot(report),
        "seconds": round(time.perf_counter() - started, 1),
    })


@dg.asset_check(asset="dual_encoder", description="Holdout Recall@10 meets the targets and fused beats text-only.")
def dual_encoder_recall_targets(dual_encoder: pl.DataFrame) -> dg.AssetCheckResult:
    metrics = json.loads(dual_encoder["metrics"][0])
    fused, image, text = (metrics[k]["recall_at_10"] for k in ("fused", "image_only", "text_only"))
    return dg.AssetCheckResult(
        passed=fused >= MIN_FUSED_RECALL and image >= MIN_IMAGE_RECALL and fused > text,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"fused": fused, "image_only": image, "text_only": text,
                  "fused_target": MIN_FUSED_RECALL, "image_target": MIN_IMAGE_RECALL},
    )


def _spec(dual_encoder: pl.DataFrame) -> tuple[EncoderSpec, str, dict]:
    row = dual_encoder.row(0, named=True)
    return spec_from_record(row), row["version"], json.loads(row["preprocess_cfg"])


@dg.multi_asset(
    outs={
        "attribute_embeddings": dg.AssetOut(description="One vector per kept vocabulary attribute, with the model version.",
                                            kinds={"ray", "parquet"}, owners=OWNERS),
        "attribute_embedding_rejections": dg.AssetOut(description="Vocabulary phrases that cannot be embedded, with reasons.",
                                                      kinds={"parquet"}, owners=OWNERS),
    },
    ins={"curated_vocabulary": dg.AssetIn(), "dual_encoder": dg.AssetIn()},
    group_name="encoder",
)
def attribute_embeddings(ray_pool: RayPool, curated_vocabulary: pl.DataFrame, dual_encoder: pl.DataFrame):
    """Every kept attribute phrase through the trained text tower (Ray Data actor stage)."""
    spec, version, _ = _spec(dual_encoder)
    import open_clip

    tokenizer = open_clip.get_tokenizer(spec.model_name)
    kept = curated_vocabulary.filter(pl.col("decision") == "keep").sort("attribute_id")
    reasons = [phrase_rejection(tokenizer, phrase) for phrase in kept["phrase"]]
    rejected = kept.with_columns(pl.Series("reason", reasons, pl.Utf8)).filter(pl.col("reason").is_not_null()).select(
        "attribute_id", "facet", "phrase", "reason")
    usable = kept.filter(~pl.col("attribute_id").is_in(rejected["attribute_id"].to_list()))
    vectors = pl.from_arrow(embed_phrases_with_ray(usable.select("attribute_id", "phrase").to_arrow(), spec,
                                                   open_clip_cache(), version, ray_pool.model_stage_options(actors=1)))
    table = usable.select("attribute_id", "facet", "phrase").join(vectors, on="attribute_id").sort("attribute_id")
    yield dg.Output(table, output_name="attribute_embeddings", metadata={
        "dagster/row_count": table.height, "model_version": version, "rejected": rejected.height,
        "preview": table_preview(table, columns=["attribute_id", "facet", "phrase"]),
    })
    yield dg.Output(rejected, output_name="attribute_embedding_rejections", metadata={"dagster/row_count": rejected.height})


@dg.asset(
    ins={"catalog_products": dg.AssetIn(), "catalog_image_features": dg.AssetIn(), "dual_encoder": dg.AssetIn()},
    partitions_def=catalog_drops, group_name="encoder", kinds={"ray", "parquet"}, owners=OWNERS,
)
def product_embeddings(
    context: dg.AssetExecutionContext, ray_pool: RayPool, catalog_products: pl.DataFrame,
    catalog_image_features: pl.DataFrame, dual_encoder: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """Every product of the drop embedded once (Ray Data: CPU preprocessing -> encoder actor pool)."""
    spec, version, preprocess_cfg = _spec(dual_encoder)
    inputs = catalog_products.join(catalog_image_features.select("product_id", "is_blank"), on="product_id",
                                   how="left").select("product_id", "title", "image_path", "is_blank")
    options = ray_pool.model_stage_options()
    threads = 1 if "num_gpus" in options else max(1, int(ray_pool.cpus_available() or 2) // 2)
    started = time.perf_counter()
    table = pl.from_arrow(embed_products_with_ray(inputs.to_arrow(), spec, open_clip_cache(), version,
                                                  preprocess_cfg, options, threads=threads))
    seconds = time.perf_counter() - started
    if table.height != catalog_products.height:
        raise RuntimeError(f"{catalog_products.height - table.height} products left the embedding job without a row")
    return dg.Output(table, metadata={
        "dagster/row_count": table.height, "model_version": version,
        "text_only_fallbacks": int((~table["image_used"]).sum()),
        "products_per_second": round(table.height / seconds, 2) if seconds else 0.0,
        "gpus": ray_pool.gpus_available(),
    })


@dg.asset(
    ins={"product_embeddings": dg.AssetIn(), "attribute_embeddings": dg.AssetIn(), "dual_encoder": dg.AssetIn()},
    partitions_def=catalog_drops, group_name="encoder", kinds={"numpy", "parquet"}, owners=OWNERS,
)
def attribute_assignments(
    context: dg.AssetExecutionContext, product_embeddings: pl.DataFrame, attribute_embeddings: pl.DataFrame,
    dual_encoder: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """Attributes per product: top-1 in exclusive facets, calibrated thresholds elsewhere, scores kept."""
    version = dual_encoder["version"][0]
    for name, frame in (("product_embeddings", product_embeddings), ("attribute_embeddings", attribute_embeddings)):
        stale = set(frame["model_version"]) - {version}
        if stale:
            raise RuntimeError(f"{name} were made by model {sorted(stale)}, not the current {version}: re-materialize them")
    thresholds = json.loads(dual_encoder["thresholds"][0])
    products = np.asarray(product_embeddings["embedding"].to_list(), np.float32)
    attributes = np.asarray(attribute_embeddings["embedding"].to_list(), np.float32)
    started = time.perf_counter()
    table = assign(context.partition_key, product_embeddings["product_id"].to_list(), products @ attributes.T,
                   attribute_embeddings["attribute_id"].to_list(), attribute_embeddings["facet"].to_list(), thresholds)
    seconds = time.perf_counter() - started
    per_product = table.group_by("product_id").len()["len"]
    return dg.Output(table, metadata={
        "dagster/row_count": table.height,
        "products": int(per_product.len()), "mean_attributes_per_product": round(float(per_product.mean()), 2),
        "pairs_scored_per_second": round(products.shape[0] * attributes.shape[0] / seconds) if seconds else 0,
        "score_histogram": histogram_markdown(table["score"], "scores of assigned attributes", "cosine similarity"),
        "preview": table_preview(table, rows=15),
    })
