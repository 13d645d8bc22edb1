"""Encoder assets. Per release: the trained dual encoder, attribute embeddings (Ray) and the release
record that puts it in service. Per drop: product embeddings (Ray Data) and assignments, made with the
release in service and recording it."""

import json
import time

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from pinlanding_assets.attributes.vocabulary import release_drops
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
from pinlanding_assets.automation import ASSIGNING, IN_RELEASE, SCORING
from pinlanding_assets.metadata import figure_markdown, histogram_markdown, table_preview
from pinlanding_assets.partitions import (
    all_drops_in,
    all_releases_in,
    catalog_drops,
    concat_partitions,
    model_releases,
    release_order,
)
from pinlanding_assets.settings import get_paths, setting, setting_float, setting_int
from resources.models import open_clip_cache
from resources.ray_pool import RayPool

OWNERS = ["team:relevance"]
MIN_FUSED_RECALL = setting_float("PINLANDING_MIN_FUSED_RECALL")
MIN_IMAGE_RECALL = setting_float("PINLANDING_MIN_IMAGE_RECALL")


class DualEncoderConfig(dg.Config):
    model_name: str = Field(default_factory=lambda: setting("PINLANDING_ENCODER"))
    max_products: int = Field(default_factory=lambda: setting_int("PINLANDING_ENCODER_PRODUCTS"))
    epochs: int = 80
    seed: int = 0
    image_weight: float = 0.5
    unfreeze_image_blocks: int = Field(
        default_factory=lambda: setting_int("PINLANDING_UNFREEZE_IMAGE_BLOCKS"),
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
    ins={"catalog_products": all_drops_in(), "catalog_image_features": all_drops_in(),
         "catalog_labels": all_drops_in(), "raw_vlm_attributes": all_drops_in(), "curated_vocabulary": dg.AssetIn()},
    partitions_def=model_releases, group_name="encoder", kinds={"pytorch", "parquet"}, owners=OWNERS,
    automation_condition=IN_RELEASE,
)
def dual_encoder(
    context: dg.AssetExecutionContext,
    config: DualEncoderConfig,
    catalog_products: dict[str, pl.DataFrame],
    catalog_image_features: dict[str, pl.DataFrame],
    catalog_labels: dict[str, pl.DataFrame],
    raw_vlm_attributes: dict[str, pl.DataFrame],
    curated_vocabulary: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """CLIP-style dual encoder (open_clip: EfficientNet-Lite0 image tower, MiniLM text tower) trained
    contrastively on VLM attributes and title phrases; versioned checkpoint; evaluated on a holdout.
    Trained on the drops its release's vocabulary saw, so re-materializing a release gives the same model."""
    started = time.perf_counter()
    drops = release_drops(curated_vocabulary)
    missing = [d for d in drops if d not in catalog_products or d not in raw_vlm_attributes]
    if missing:
        raise RuntimeError(f"release {context.partition_key} was curated from drops whose tables are gone: {missing}")

    def of_release(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
        return concat_partitions({d: f for d, f in frames.items() if d in drops})

    products = of_release(catalog_products).join(
        of_release(catalog_image_features).select("product_id", "is_blank"), on="product_id", how="left")
    context.log.info(f"release {context.partition_key}: training on {products.height} products of {len(drops)} drops")
    raw = of_release(raw_vlm_attributes)
    pairs = pl.concat([vlm_pairs(raw, curated_vocabulary),
                       title_matches(products, curated_vocabulary)]).unique().sort(["product_id", "attribute_id"])
    spec = EncoderSpec(model_name=config.model_name, image_weight=config.image_weight, seed=config.seed)
    training = TrainingConfig(seed=config.seed, max_products=config.max_products, epochs=config.epochs,
                              unfreeze_image_blocks=config.unfreeze_image_blocks)
    encoder = DualEncoder(spec, open_clip_cache())
    cache = build_feature_cache(encoder, products, pairs, curated_vocabulary, training,
                                fully_labelled=set(raw["product_id"].to_list()))
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
    context.log.info(f"trained {report.epochs_run} epochs; evaluating on {holdout.height} holdout products")
    metrics = evaluate_encoders(encoder, holdout, of_release(catalog_labels), curated_vocabulary, thresholds)
    summary = pl.DataFrame([{
        "release": context.partition_key, "version": version, "checkpoint": str(checkpoint), "spec": spec.to_json(),
        "preprocess_cfg": json.dumps(preprocess_cfg, sort_keys=True), "thresholds": json.dumps(thresholds, sort_keys=True),
        "metrics": json.dumps(metrics, sort_keys=True), "training": json.dumps(report.__dict__, sort_keys=True),
    }])
    return dg.Output(summary, metadata={
        "release": context.partition_key,
        "version": version,
        "drops": dg.MetadataValue.json(drops),
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


@dg.asset_check(asset="dual_encoder", partitions_def=model_releases,
                description="Holdout Recall@10 meets the targets and fused beats text-only.")
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
                                            kinds={"ray", "parquet"}, owners=OWNERS, automation_condition=IN_RELEASE),
        "attribute_embedding_rejections": dg.AssetOut(description="Vocabulary phrases that cannot be embedded, with reasons.",
                                                      kinds={"parquet"}, owners=OWNERS, automation_condition=IN_RELEASE),
    },
    ins={"curated_vocabulary": dg.AssetIn(), "dual_encoder": dg.AssetIn()},
    partitions_def=model_releases, group_name="encoder",
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
    ins={"curated_vocabulary": dg.AssetIn(), "dual_encoder": dg.AssetIn(), "attribute_embeddings": dg.AssetIn()},
    partitions_def=model_releases, group_name="encoder", kinds={"parquet"}, owners=OWNERS,
    automation_condition=IN_RELEASE,
)
def model_release(context: dg.AssetExecutionContext, curated_vocabulary: pl.DataFrame, dual_encoder: pl.DataFrame,
                  attribute_embeddings: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    """A release in service: vocabulary, dual encoder and attribute embeddings built together. Drops are
    scored with the newest release in service; a release whose training failed never gets here."""
    row = dual_encoder.row(0, named=True)
    if set(attribute_embeddings["model_version"]) != {row["version"]}:
        raise RuntimeError(f"attribute embeddings of release {context.partition_key} were not made by its encoder")
    drops = release_drops(curated_vocabulary)
    metrics = json.loads(row["metrics"])
    table = pl.DataFrame([{"release": context.partition_key, "version": row["version"], "checkpoint": row["checkpoint"],
                           "drops": json.dumps(drops), "attributes": attribute_embeddings.height}])
    return dg.Output(table, metadata={
        "release": context.partition_key, "version": row["version"],
        "drops": json.dumps(drops),
        "attributes": attribute_embeddings.height,
        "fused_recall_at_10": metrics["fused"]["recall_at_10"],
    })


def release_in_service(model_release: dict[str, pl.DataFrame]) -> str:
    """The newest materialized release (partitions load only where materialized)."""
    if not model_release:
        raise RuntimeError("no model release is in service yet: cut one (`pinlanding release`) first")
    return max(model_release, key=release_order)


@dg.asset(
    ins={"catalog_products": dg.AssetIn(), "catalog_image_features": dg.AssetIn(), "model_release": all_releases_in(),
         "dual_encoder": all_releases_in()},
    partitions_def=catalog_drops, group_name="encoder", kinds={"ray", "parquet"}, owners=OWNERS,
    automation_condition=SCORING,
)
def product_embeddings(
    context: dg.AssetExecutionContext, ray_pool: RayPool, catalog_products: pl.DataFrame,
    catalog_image_features: pl.DataFrame, model_release: dict[str, pl.DataFrame], dual_encoder: dict[str, pl.DataFrame],
) -> dg.Output[pl.DataFrame]:
    """Every product of the drop embedded once with the release in service (Ray Data: CPU preprocessing
    -> encoder actor pool)."""
    release = release_in_service(model_release)
    spec, version, preprocess_cfg = _spec(dual_encoder[release])
    inputs = catalog_products.join(catalog_image_features.select("product_id", "is_blank"), on="product_id",
                                   how="left").select("product_id", "title", "image_path", "is_blank")
    options = ray_pool.model_stage_options()
    threads = 1 if "num_gpus" in options else max(1, int(ray_pool.cpus_available() or 2) // 2)
    context.log.info(f"embedding {inputs.height} products of {context.partition_key} with release {release}")
    started = time.perf_counter()
    table = pl.from_arrow(embed_products_with_ray(inputs.to_arrow(), spec, open_clip_cache(), version,
                                                  preprocess_cfg, options, threads=threads))
    seconds = time.perf_counter() - started
    if table.height != catalog_products.height:
        raise RuntimeError(f"{catalog_products.height - table.height} products left the embedding job without a row")
    table = table.with_columns(pl.lit(release).alias("release"))
    context.log.info(f"{table.height} products embedded in {seconds:.0f}s")
    return dg.Output(table, metadata={
        "dagster/row_count": table.height, "release": release, "model_version": version,
        "text_only_fallbacks": int((~table["image_used"]).sum()),
        "products_per_second": round(table.height / seconds, 2) if seconds else 0.0,
        "gpus": ray_pool.gpus_available(),
    })


@dg.asset(
    ins={"product_embeddings": dg.AssetIn(), "attribute_embeddings": all_releases_in(),
         "dual_encoder": all_releases_in()},
    partitions_def=catalog_drops, group_name="encoder", kinds={"numpy", "parquet"}, owners=OWNERS,
    automation_condition=ASSIGNING,
)
def attribute_assignments(
    context: dg.AssetExecutionContext, product_embeddings: pl.DataFrame, attribute_embeddings: dict[str, pl.DataFrame],
    dual_encoder: dict[str, pl.DataFrame],
) -> dg.Output[pl.DataFrame]:
    """Attributes per product with the release that embedded them: top-1 in exclusive facets,
    calibrated thresholds elsewhere, scores kept."""
    [release] = set(product_embeddings["release"]) if "release" in product_embeddings.columns else {None}
    if release not in dual_encoder or release not in attribute_embeddings:
        raise RuntimeError(f"product embeddings of {context.partition_key} were made by release {release}, "
                           "which is not materialized: re-materialize product_embeddings")
    encoder, phrases = dual_encoder[release], attribute_embeddings[release]
    version = encoder["version"][0]
    for name, frame in (("product_embeddings", product_embeddings), ("attribute_embeddings", phrases)):
        stale = set(frame["model_version"]) - {version}
        if stale:
            raise RuntimeError(f"{name} were made by model {sorted(stale)}, not release {release}'s {version}")
    thresholds = json.loads(encoder["thresholds"][0])
    products = np.asarray(product_embeddings["embedding"].to_list(), np.float32)
    attributes = np.asarray(phrases["embedding"].to_list(), np.float32)
    started = time.perf_counter()
    table = assign(context.partition_key, product_embeddings["product_id"].to_list(), products @ attributes.T,
                   phrases["attribute_id"].to_list(), phrases["facet"].to_list(), thresholds)
    seconds = time.perf_counter() - started
    table = table.with_columns(pl.lit(release).alias("release"), pl.lit(version).alias("model_version"))
    per_product = table.group_by("product_id").len()["len"]
    return dg.Output(table, metadata={
        "dagster/row_count": table.height, "release": release, "model_version": version,
        "products": int(per_product.len()),
        "mean_attributes_per_product": round(float(per_product.mean()), 2) if per_product.len() else 0.0,
        "pairs_scored_per_second": round(products.shape[0] * attributes.shape[0] / seconds) if seconds else 0,
        "score_histogram": histogram_markdown(table["score"], "scores of assigned attributes", "cosine similarity"),
        "preview": table_preview(table, rows=15),
    })
