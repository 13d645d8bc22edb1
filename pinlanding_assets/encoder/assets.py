"""Encoder assets. Per release: the trained dual encoder, attribute embeddings (Ray) and the release
record that puts it in service. Per drop: product embeddings (Ray Data) and assignments, made with the
release in service and recording it."""

import time
from dataclasses import replace

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from pinlanding_assets.attributes.vocabulary import release_drops
from pinlanding_assets.encoder.assignments import AttributeTable, assign_with_ray, unscorable_with_ray
from pinlanding_assets.encoder.embeddings import (
    embed_phrases_with_ray,
    embed_products_with_ray,
    phrase_rejection,
)
from pinlanding_assets.encoder.evaluation import evaluate_encoders
from pinlanding_assets.encoder.model import write_checkpoint
from pinlanding_assets.encoder.records import EncoderRecord, EncoderSpec
from pinlanding_assets.encoder.training import TrainingConfig, holdout_products, train_dual_encoder
from pinlanding_assets.facets import kept_vocabulary
from pinlanding_assets.metadata import figure_markdown, histogram_markdown, table_preview
from pinlanding_assets.partitions import (
    all_drops_in,
    all_releases_in,
    catalog_drops,
    concat_partitions,
    landed_drops,
    model_releases,
    run_drops_in,
)
from pinlanding_assets.refresh.conditions import ASSIGNING, IN_RELEASE, SCORING
from pinlanding_assets.refresh.keys import MODEL_RELEASE
from pinlanding_assets.refresh.releases import ReleaseRecord, current_release
from pinlanding_assets.settings import ProjectSettings, QualityGates, Settings, fill_unset
from resources.ray_pool import RayPool
from resources.storage import StagedParquet

OWNERS = ["team:relevance"]
ASSIGNMENT_BLOCK_ROWS = 4096
ANCHOR_FACET = "category"  # exclusive: every scored product has exactly one, which is how they are counted


class DualEncoderConfig(dg.Config):
    """Unset fields take the project's settings (PINLANDING_ENCODER, _ENCODER_PRODUCTS,
    _UNFREEZE_IMAGE_BLOCKS)."""

    model_name: str | None = None
    max_products: int | None = None
    epochs: int = 80
    seed: int = 0
    image_weight: float = 0.5
    unfreeze_image_blocks: int | None = Field(
        None, description="also train the last N stages of the image trunk (0: heads only, on cached features)")
    colour_descriptor: bool = Field(
        default=True, description="give the image side the product's foreground colour histogram")

    def resolved(self, project: Settings) -> "DualEncoderConfig":
        given = project.encoder
        return fill_unset(self, model_name=given.model_name, max_products=given.max_products,
                          unfreeze_image_blocks=given.unfreeze_image_blocks)


def per_facet_table(metrics: dict) -> dg.MarkdownMetadataValue:
    """Holdout top-1 per facet for each encoder (fused with calibrated thresholds on multi-valued facets)."""
    facets = sorted({f for figures in metrics.values() for f in figures["per_facet"]})
    lines = ["| facet | products | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for facet in facets:
        products = max(figures["per_facet"].get(facet, {}).get("products", 0) for figures in metrics.values())
        cells = [f"{figures['per_facet'][facet]['recall']:.3f}" if facet in figures["per_facet"] else "" for figures
                 in metrics.values()]
        lines.append(f"| {facet} | {products} | " + " | ".join(cells) + " |")
    lines.append("| Recall@10 | | " + " | ".join(f"{figures['recall_at_10']:.3f}" for figures in metrics.values()) + " |")
    lines.append("\n_Share of holdout products whose label the encoder names: top-1, except fused on facets that "
                 "are not exclusive (colour, occasion, ...), where it is every attribute above its calibrated "
                 "threshold, as assignments do._")
    return dg.MetadataValue.md("\n".join(lines))


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
         "catalog_ground_truth": all_drops_in(), "raw_vlm_attributes": all_drops_in(), "curated_vocabulary": dg.AssetIn()},
    partitions_def=model_releases, group_name="encoder", kinds={"pytorch", "parquet"}, owners=OWNERS,
    automation_condition=IN_RELEASE,
)
def dual_encoder(
    context: dg.AssetExecutionContext,
    config: DualEncoderConfig,
    project: ProjectSettings,
    catalog_products: dict[str, pl.DataFrame],
    catalog_image_features: dict[str, pl.DataFrame],
    catalog_ground_truth: dict[str, pl.DataFrame],
    raw_vlm_attributes: dict[str, pl.DataFrame],
    curated_vocabulary: pl.DataFrame,
) -> dg.Output[pl.DataFrame]:
    """CLIP-style dual encoder (open_clip: EfficientNet-Lite0 image tower, MiniLM text tower) trained
    contrastively on VLM attributes and title phrases; versioned checkpoint; evaluated on a holdout.
    Trained on the drops its release's vocabulary saw, so re-materializing a release gives the same model."""
    started = time.perf_counter()
    config = config.resolved(project)
    drops = release_drops(curated_vocabulary)
    missing = [d for d in drops if d not in catalog_products or d not in raw_vlm_attributes]
    if missing:
        raise RuntimeError(f"release {context.partition_key} was curated from drops whose tables are gone: {missing}")

    landed = landed_drops(context.instance)

    def of_release(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
        return concat_partitions({d: f for d, f in frames.items() if d in drops}, landed)

    products = of_release(catalog_products).join(
        of_release(catalog_image_features).select("product_id", "is_blank"), on="product_id", how="left")
    context.log.info(f"release {context.partition_key}: training on {products.height} products of {len(drops)} drops")
    spec = EncoderSpec(model_name=config.model_name, image_weight=config.image_weight, seed=config.seed,
                       colour_descriptor=config.colour_descriptor)
    training = TrainingConfig(seed=config.seed, max_products=config.max_products, epochs=config.epochs,
                              unfreeze_image_blocks=config.unfreeze_image_blocks)
    paths = project.paths
    trained = train_dual_encoder(products, of_release(raw_vlm_attributes), curated_vocabulary, spec, training,
                                 paths.open_clip_cache, progress=context.log.info)
    encoder, report, thresholds, preprocess_cfg = (trained.encoder, trained.report, trained.thresholds,
                                                   trained.preprocess_cfg)
    version, checkpoint = write_checkpoint(encoder.model, spec, paths.checkpoint_dir,
                                           {"thresholds": thresholds, "preprocess_cfg": preprocess_cfg})
    holdout = holdout_products(products, training)
    context.log.info(f"trained {report.epochs_run} epochs; evaluating on {holdout.height} holdout products")
    metrics = evaluate_encoders(encoder, holdout, of_release(catalog_ground_truth), curated_vocabulary, thresholds)
    record = EncoderRecord(release=context.partition_key, version=version, checkpoint=str(checkpoint),
                           spec=replace(spec, checkpoint=str(checkpoint)), preprocess_cfg=preprocess_cfg,
                           thresholds=thresholds, metrics=metrics, training=report.__dict__)
    return dg.Output(record.to_table(), metadata={
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
        "per_facet": per_facet_table(metrics),
        "metrics": dg.MetadataValue.json(metrics),
        "colour_descriptor": spec.colour_descriptor,
        "loss_curve": _loss_plot(report),
        "seconds": round(time.perf_counter() - started, 1),
    })


@dg.asset_check(asset="dual_encoder", partitions_def=model_releases,
                description="Holdout Recall@10 meets the targets and fused beats text-only.")
def dual_encoder_recall_targets(quality_gates: QualityGates, dual_encoder: pl.DataFrame) -> dg.AssetCheckResult:
    record = EncoderRecord.from_table(dual_encoder)
    fused, image, text = (record.recall_at_10(side) for side in ("fused", "image_only", "text_only"))
    return dg.AssetCheckResult(
        passed=fused >= quality_gates.min_fused_recall and image >= quality_gates.min_image_recall and fused > text,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"fused": fused, "image_only": image, "text_only": text,
                  "fused_target": quality_gates.min_fused_recall, "image_target": quality_gates.min_image_recall},
    )


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
def attribute_embeddings(ray_pool: RayPool, project: ProjectSettings, curated_vocabulary: pl.DataFrame,
                         dual_encoder: pl.DataFrame):
    """Every kept attribute phrase through the trained text tower (Ray Data actor stage)."""
    encoder = EncoderRecord.from_table(dual_encoder)
    spec, version = encoder.spec, encoder.version
    import open_clip

    tokenizer = open_clip.get_tokenizer(spec.model_name)
    kept = kept_vocabulary(curated_vocabulary).sort("attribute_id")
    reasons = [phrase_rejection(tokenizer, phrase) for phrase in kept["phrase"]]
    rejected = kept.with_columns(pl.Series("reason", reasons, pl.Utf8)).filter(pl.col("reason").is_not_null()).select(
        "attribute_id", "facet", "phrase", "reason")
    usable = kept.filter(~pl.col("attribute_id").is_in(rejected["attribute_id"].to_list()))
    vectors = pl.from_arrow(embed_phrases_with_ray(usable.select("attribute_id", "phrase").to_arrow(), spec,
                                                   project.paths.open_clip_cache, version,
                                                   ray_pool.model_stage_options(actors=1)))
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
    encoder = EncoderRecord.from_table(dual_encoder)
    if set(attribute_embeddings["model_version"]) != {encoder.version}:
        raise RuntimeError(f"attribute embeddings of release {context.partition_key} were not made by its encoder")
    record = ReleaseRecord(key=context.partition_key, version=encoder.version, checkpoint=encoder.checkpoint,
                           drops=tuple(release_drops(curated_vocabulary)), attributes=attribute_embeddings.height,
                           thresholds=encoder.thresholds, fused_recall_at_10=encoder.recall_at_10("fused"))
    return dg.Output(record.to_table(), metadata=record.metadata())


def encoder_stage(ray_pool: RayPool) -> tuple[dict, int]:
    """(model-stage options, torch threads per actor): on CPUs, ``max_model_actors`` actors sharing the
    CPUs (2 single-threaded actors run the encoder 1.27x faster than one with 2 threads on 2 CPUs);
    one actor per GPU otherwise."""
    gpu = ray_pool.model_stage_options()
    if "num_gpus" in gpu:
        return gpu, 1
    cpus = max(1, int(ray_pool.cpus_available() or 2))
    actors = max(1, min(ray_pool.max_model_actors, cpus))
    return ray_pool.model_stage_options(actors=actors), max(1, cpus // actors)


def scoring_threads(ray_pool: RayPool, options: dict) -> int:
    """Torch threads for the single scoring actor: every CPU (one beside a GPU)."""
    return 1 if "num_gpus" in options else max(1, int(ray_pool.cpus_available() or 2))


def _per_partition(drops: list[str], figures: dict[str, dict], extra: dict) -> dict:
    """Output metadata: a run over one drop gives its figures; a run over several (a release re-scoring
    every drop) gives each drop's figures under ``drops``, since every partition gets the same metadata."""
    if len(drops) == 1:
        return {**figures[drops[0]], **extra}
    return {"drops": dg.MetadataValue.json(figures), "drops_in_run": len(drops), **extra}


@dg.asset(
    ins={"catalog_products": run_drops_in(), "catalog_image_features": run_drops_in(), "dual_encoder": all_releases_in()},
    deps=[dg.AssetDep(MODEL_RELEASE, partition_mapping=dg.AllPartitionMapping())],
    partitions_def=catalog_drops, group_name="encoder", kinds={"ray", "parquet"}, owners=OWNERS,
    automation_condition=SCORING, backfill_policy=dg.BackfillPolicy.single_run(),
)
def product_embeddings(
    context: dg.AssetExecutionContext, ray_pool: RayPool, project: ProjectSettings,
    catalog_products: dict[str, pl.DataFrame],
    catalog_image_features: dict[str, pl.DataFrame], dual_encoder: dict[str, pl.DataFrame],
) -> dg.Output[dict[str, StagedParquet]]:
    """Every product of the drop embedded once with the release in service (Ray Data: CPU decode tasks
    -> encoder actor pool). Ray writes the vectors to the partition's Parquet directory itself; they
    never pass through this process. A release re-scores every drop in one run (a single-run backfill):
    one process and one Ray for all drops instead of one per drop."""
    release = current_release(context.instance)
    if release is None:
        raise RuntimeError("no model release is in service yet: cut one (`pinlanding release`) first")
    encoder = EncoderRecord.from_table(dual_encoder[release])
    spec, version, preprocess_cfg = encoder.spec, encoder.version, encoder.preprocess_cfg
    options, threads = encoder_stage(ray_pool)
    paths = project.paths
    staged, figures = {}, {}
    for drop in context.partition_keys:
        products = catalog_products[drop]
        inputs = products.select("product_id", "title", "image_path").join(
            catalog_image_features[drop].select("product_id", "is_blank"), on="product_id", how="left")
        context.log.info(f"embedding {inputs.height} products of {drop} with release {release} "
                         f"({options['compute']}, {threads} torch thread(s) per encoder actor)")
        started = time.perf_counter()
        staged[drop] = embed_products_with_ray(inputs.to_arrow(), spec, paths.open_clip_cache, version, release,
                                               preprocess_cfg, options, paths.staging_path("product_embeddings", drop),
                                               threads=threads)
        seconds = time.perf_counter() - started
        written = pl.scan_parquet(staged[drop].path).select(
            pl.len().alias("rows"), (~pl.col("image_used")).sum().alias("fallbacks")).collect().row(0, named=True)
        if written["rows"] != products.height:
            raise RuntimeError(f"{products.height - written['rows']} products of {drop} left the embedding job "
                               "without a row")
        context.log.info(f"{drop}: {written['rows']} products embedded in {seconds:.0f}s")
        figures[drop] = {"dagster/row_count": written["rows"], "text_only_fallbacks": written["fallbacks"],
                         "products_per_second": round(written["rows"] / seconds, 2) if seconds else 0.0,
                         "seconds": round(seconds, 1)}
    return dg.Output(staged, metadata=_per_partition(context.partition_keys, figures, {
        "release": release, "model_version": version, "torch_threads_per_actor": threads,
        "gpus": ray_pool.gpus_available()}))


@dg.multi_asset(
    outs={
        "attribute_assignments": dg.AssetOut(
            description="Attributes per product with the release that embedded them: top-1 in exclusive facets, "
                        "calibrated thresholds elsewhere, scores kept. Written block by block by Ray.",
            kinds={"ray", "parquet"}, owners=OWNERS, automation_condition=ASSIGNING),
        "assignment_quarantine": dg.AssetOut(
            description="Products of the drop that could not be scored, with the reason.", kinds={"parquet"},
            owners=OWNERS, automation_condition=ASSIGNING),
    },
    ins={"product_embeddings": run_drops_in(), "attribute_embeddings": all_releases_in(),
         "dual_encoder": all_releases_in()},
    partitions_def=catalog_drops, group_name="encoder", backfill_policy=dg.BackfillPolicy.single_run(),
)
def attribute_assignments(
    context: dg.AssetExecutionContext, ray_pool: RayPool, project: ProjectSettings,
    product_embeddings: dict[str, pl.LazyFrame],
    attribute_embeddings: dict[str, pl.DataFrame], dual_encoder: dict[str, pl.DataFrame],
):
    """Blocked scoring: each block of products is one GEMM against the release's attributes, assigned
    and written by Ray; memory is bounded by the block, not the drop. Unusable vectors are quarantined.
    Every drop of the run must have been embedded by one materialized release."""
    drops = context.partition_keys
    made = pl.concat([product_embeddings[d].select("release", "model_version") for d in drops]).unique().collect()
    releases = sorted(set(made["release"]), key=str)
    release = releases[0] if len(releases) == 1 else None
    if release not in dual_encoder or release not in attribute_embeddings:
        raise RuntimeError(f"product embeddings of {', '.join(drops)} were made by release(s) {releases}, which is "
                           "not one materialized release: re-materialize product_embeddings")
    encoder, phrases = EncoderRecord.from_table(dual_encoder[release]), attribute_embeddings[release]
    version = encoder.version
    stale = (set(made["model_version"]) | set(phrases["model_version"])) - {version}
    if stale:
        raise RuntimeError(f"embeddings of {', '.join(drops)} were made by model {sorted(stale)}, not release "
                           f"{release}'s {version}")
    if ANCHOR_FACET not in set(phrases["facet"]):
        raise RuntimeError(f"release {release} has no {ANCHOR_FACET} attribute: products cannot be assigned a type")
    table = AttributeTable.build(phrases["attribute_id"].to_list(), phrases["facet"].to_list(),
                                 np.asarray(phrases["embedding"].to_list(), np.float32),
                                 encoder.thresholds)
    paths = project.paths
    options = ray_pool.model_stage_options(actors=1)
    staged, quarantines, figures = {}, {}, {}
    for drop in drops:
        embeddings = paths.partition_path("product_embeddings", drop)
        quarantines[drop] = unscorable_with_ray(embeddings, drop, table.vectors.shape[1], ASSIGNMENT_BLOCK_ROWS)
        context.log.info(f"scoring {drop} against {len(table.ids)} attributes of release {release} in blocks of "
                         f"{ASSIGNMENT_BLOCK_ROWS} products; {quarantines[drop].height} unusable vector(s) quarantined")
        started = time.perf_counter()
        staged[drop] = assign_with_ray(embeddings, table, drop, release, version,
                                       options, paths.staging_path("attribute_assignments", drop),
                                       block_rows=ASSIGNMENT_BLOCK_ROWS, threads=scoring_threads(ray_pool, options))
        seconds = time.perf_counter() - started
        summary = pl.scan_parquet(staged[drop].path).select(
            pl.len().alias("rows"), ((pl.col("method") == "top1") & (pl.col("facet") == ANCHOR_FACET)).sum()
            .alias("products")).collect(engine="streaming").row(0, named=True)
        embedded = product_embeddings[drop].select(pl.len()).collect().item()
        if summary["products"] + quarantines[drop].height != embedded:
            raise RuntimeError(f"{embedded - summary['products'] - quarantines[drop].height} products of {drop} were "
                               "neither assigned nor quarantined")
        count = summary["rows"]
        figures[drop] = {
            "dagster/row_count": count, "products": summary["products"], "quarantined": quarantines[drop].height,
            "mean_attributes_per_product": round(count / summary["products"], 2) if summary["products"] else 0.0,
            "seconds": round(seconds, 1),
            "pairs_scored_per_second": round(embedded * len(table.ids) / seconds) if seconds else 0}
    extra = {"release": release, "model_version": version, "block_rows": ASSIGNMENT_BLOCK_ROWS}
    if len(drops) == 1:
        rows = pl.scan_parquet(staged[drops[0]].path)
        scores = rows.select("score").head(100_000).collect()["score"]  # the first products' scores, for the plot
        extra |= {"score_histogram": histogram_markdown(scores, "scores of assigned attributes", "cosine similarity"),
                  "preview": table_preview(rows.head(15).collect(), rows=15)}
    yield dg.Output(staged, output_name="attribute_assignments", metadata=_per_partition(drops, figures, extra))
    yield dg.Output(quarantines, output_name="assignment_quarantine", metadata=_per_partition(
        drops, {d: {"dagster/row_count": q.height} for d, q in quarantines.items()},
        {"preview": table_preview(pl.concat(list(quarantines.values())))}))
