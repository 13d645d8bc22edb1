"""Attribute assets: candidate attributes per drop (VLM stage on Ray) and the curated vocabulary per release."""

import json
import os
import time

import dagster as dg
import polars as pl
from pydantic import Field

from pinlanding_assets.attributes.brands import find_brands
from pinlanding_assets.attributes.product_types import modifier_words, title_product_types
from pinlanding_assets.attributes.quality import raw_accuracy, vocabulary_coverage
from pinlanding_assets.attributes.raw_attributes import (
    extract_with_ray,
    sample_products,
    sample_size,
    split_results,
    title_type,
)
from pinlanding_assets.attributes.vocabulary import CurationConfig, curate
from pinlanding_assets.attributes.vocabulary_map import vocabulary_map
from pinlanding_assets.facets import kept_vocabulary
from pinlanding_assets.metadata import figure_markdown, table_preview
from pinlanding_assets.partitions import all_drops_in, catalog_drops, concat_partitions, landed_drops, model_releases
from pinlanding_assets.progress import Progress
from pinlanding_assets.refresh.conditions import LABELLING, RELEASE_CUT
from pinlanding_assets.refresh.keys import VLM_ATTRIBUTES
from pinlanding_assets.settings import ProjectSettings, Settings, fill_unset
from resources.model_backends import ModelBackends
from resources.models import minilm_encoder
from resources.ray_pool import RayPool

OWNERS = ["team:attributes"]


class AttributeSampleConfig(dg.Config):
    """Unset fields take the project's settings (PINLANDING_ATTRIBUTE_SAMPLE, _BUDGET_S, _ACTORS)."""

    sample: str | None = Field(
        None, description="Products per drop sent to the VLM stage: 'budget' (what the time budget allows), a number, "
                          "or 'all'.")
    budget_seconds: float | None = Field(
        None, description="Seconds the VLM stage may spend on one drop when sample='budget', on this machine: the "
                          "sample is sized from the rate measured on this instance (a probe the first time), and a "
                          "drop re-materialized keeps the size it was given.")
    actors: int | None = None
    batch_size: int = 4
    seed: int = 0

    def resolved(self, project: Settings) -> "AttributeSampleConfig":
        given = project.attributes
        return fill_unset(self, sample=given.sample, budget_seconds=given.budget_s, actors=given.actors)


BUDGET = "budget"
PROBE_PRODUCTS = 4  # labelled first when this instance has never measured the model's rate


def sample_size_for(sample: str, available: int) -> int | None:
    """Products to label in a drop of ``available`` under a fixed rule: None means all. The budget rule
    is sized by ``budget_sample`` from the rate measured on the instance."""
    rule = sample.strip().lower()
    if rule == "all":
        return None
    if rule == BUDGET:
        raise ValueError("the budget rule is sized from a measured rate: use budget_sample")
    if not rule.isdigit() or int(rule) < 1:
        raise ValueError(f"attribute sample must be 'budget', 'all' or a positive number, got {sample!r}")
    return int(rule)


def _labelling_records(instance: dg.DagsterInstance, drop: str | None = None, limit: int = 50):
    """The newest ``limit`` materializations of the VLM stage (of one drop, if given): its measured rates."""
    return instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=VLM_ATTRIBUTES, asset_partitions=[drop] if drop else None), limit=limit).records


def _value(record, name: str):
    value = record.asset_materialization.metadata.get(name)
    return value.value if value is not None else None


def budget_sample(instance: dg.DagsterInstance, drop: str, rate_key: str, budget_seconds: float,
                  available: int) -> tuple[int | None, str]:
    """(products to label, where the size comes from) under the time budget. A drop labelled before under
    the same budget keeps its size (re-materializing gives the same sample); otherwise the size is the
    budget times the rate the stage last reached on this instance with this model (its whole run, model
    loading included, so the budget holds here, on this machine's CPU). None: never measured, probe first."""
    for record in _labelling_records(instance, drop, limit=1):
        if _value(record, "budget_seconds") == budget_seconds and _value(record, "rate_key") == rate_key:
            size = int(_value(record, "sampled_products"))
            return min(size, available), f"the size this drop was given before ({size})"
    for record in _labelling_records(instance):
        rate = _value(record, "products_per_second")
        if _value(record, "rate_key") == rate_key and rate:
            size = sample_size(budget_seconds, rate, available)
            return size, f"{budget_seconds:g} s x {rate:g} products/s measured on this instance ({record.partition_key})"
    return None, "never measured here"


class CurationRunConfig(dg.Config):
    """Unset fields take the project's settings (PINLANDING_MIN_SUPPORT, _JUDGE_THRESHOLD,
    _MIN_TITLE_TYPE_PRODUCTS)."""

    min_support: int | None = None
    merge_distance: float = 0.13
    judge_threshold: float | None = None
    min_title_type_products: int | None = None

    def resolved(self, project: Settings) -> "CurationRunConfig":
        given = project.attributes
        return fill_unset(self, min_support=given.min_support, judge_threshold=given.judge_threshold,
                          min_title_type_products=given.min_title_type_products)


@dg.multi_asset(
    outs={
        "raw_vlm_attributes": dg.AssetOut(
            description="Candidate attributes (facet, phrase) for a sample of the drop, with backend and model.",
            kinds={"ray", "parquet"}, owners=OWNERS, automation_condition=LABELLING,
        ),
        "raw_vlm_quarantine": dg.AssetOut(
            description="Sampled products whose model output could not be used: raw text and reason.",
            kinds={"parquet"}, owners=OWNERS, automation_condition=LABELLING,
        ),
    },
    ins={"catalog_products": dg.AssetIn(), "catalog_image_features": dg.AssetIn(), "catalog_ground_truth": dg.AssetIn()},
    partitions_def=catalog_drops,
    group_name="attributes",
)
def raw_vlm_attributes(
    context: dg.AssetExecutionContext,
    config: AttributeSampleConfig,
    project: ProjectSettings,
    ray_pool: RayPool,
    models: ModelBackends,
    catalog_products: pl.DataFrame,
    catalog_image_features: pl.DataFrame,
    catalog_ground_truth: pl.DataFrame,
):
    """VLM stage on a stable sample of the drop (Ray Data: CPU preprocessing -> model actor pool)."""
    config = config.resolved(project)
    drop, available = context.partition_key, catalog_products.height
    threads = max(1, int(ray_pool.cpus_available() or os.cpu_count() or 2) // max(config.actors, 1))
    spec = models.attribute_spec(threads=threads)
    rate_key = json.dumps({k: v for k, v in sorted(spec.items()) if k != "api_key"}, sort_keys=True)
    budgeted = config.sample.strip().lower() == BUDGET
    size, source = budget_sample(context.instance, drop, rate_key, config.budget_seconds, available) if budgeted else (
        sample_size_for(config.sample, available), config.sample)
    colours = catalog_image_features.select("product_id", pl.col("dominant_colours").alias("image_colours"))

    def label(products: pl.DataFrame, what: str) -> pl.DataFrame:
        inputs = products.join(colours, on="product_id", how="left").select(
            "product_id", "title", "description", "image_path", "image_colours").to_arrow()
        progress = Progress(context.log.info, f"{drop} {what}", products.height)
        return pl.from_arrow(extract_with_ray(inputs, spec, ray_pool.model_stage_options(actors=config.actors),
                                              batch_size=config.batch_size, on_rows=progress.add))

    started = time.perf_counter()
    parts = []
    if budgeted and size is None:
        probe = sample_products(catalog_products, PROBE_PRODUCTS, config.seed)
        parts.append(label(probe, "probe labelled"))
        rate = probe.height / (time.perf_counter() - started)
        size = sample_size(config.budget_seconds, rate, available)
        source = f"{config.budget_seconds:g} s x {rate:.3g} products/s measured by a {probe.height}-product probe"
    sample = sample_products(catalog_products, size, config.seed)
    rest = sample.join(parts[0].select("product_id"), on="product_id", how="anti") if parts else sample
    context.log.info(f"{drop}: labelling {sample.height} of {available} products ({source}; {spec['backend']} "
                     f"backend, {spec.get('slots', 1)} slot(s))")
    if rest.height:
        parts.append(label(rest, "labelled"))
    results = pl.concat(parts).sort("product_id")
    seconds = time.perf_counter() - started
    attributes, quarantine = split_results(context.partition_key, results)
    types = dict(zip(catalog_products["product_id"], map(title_type, catalog_products["title"])))
    quality = raw_accuracy(attributes, catalog_ground_truth, minilm_encoder()) if attributes.height else {}
    facet_counts = attributes.group_by("facet").agg(
        pl.col("product_id").n_unique().alias("products"), pl.col("value").n_unique().alias("phrases")
    ).sort("products", descending=True)
    yield dg.Output(attributes, output_name="raw_vlm_attributes", metadata={
        "dagster/row_count": attributes.height,
        "sampled_products": sample.height,
        "sample_rule": source,
        "budget_seconds": config.budget_seconds if budgeted else 0.0,
        "rate_key": rate_key,
        "product_types_sampled": len({types[pid] for pid in sample["product_id"]}),
        "product_types_in_drop": len(set(types.values())),
        "labelled_products": results.height - quarantine.height,
        "quarantined": quarantine.height,
        "repaired": int((results["attempts"] > 1).sum() - quarantine.height) if results.height else 0,
        "instruction_text_removed": int(results["instruction_text_removed"].sum()) if results.height else 0,
        "backend": spec["backend"],
        "model": results["model"][0] if results.height else "",
        "products_per_second": round(results.height / seconds, 3) if seconds else 0.0,
        "seconds": round(seconds, 1),
        **{name: value for name, value in quality.items()},
        "facets": table_preview(facet_counts, rows=20),
        "preview": table_preview(attributes, rows=20, columns=["product_id", "facet", "value"]),
    })
    yield dg.Output(quarantine, output_name="raw_vlm_quarantine", metadata={
        "dagster/row_count": quarantine.height,
        "preview": table_preview(quarantine, columns=["product_id", "reason", "raw"]),
    })


@dg.asset(
    ins={"raw_vlm_attributes": all_drops_in(), "catalog_ground_truth": all_drops_in(), "catalog_products": all_drops_in()},
    partitions_def=model_releases, group_name="attributes", kinds={"polars", "parquet"}, owners=OWNERS,
    automation_condition=RELEASE_CUT,
)
def curated_vocabulary(
    context: dg.AssetExecutionContext,
    config: CurationRunConfig,
    project: ProjectSettings,
    models: ModelBackends,
    raw_vlm_attributes: dict[str, pl.DataFrame],
    catalog_ground_truth: dict[str, pl.DataFrame],
    catalog_products: dict[str, pl.DataFrame],
) -> dg.Output[pl.DataFrame]:
    """A release's vocabulary: the raw phrases of every labelled drop -> normalised -> frequency-filtered
    -> brand names removed -> clustered -> judged by the LLM. The drops it saw are the release's drops."""
    config = config.resolved(project)
    if not raw_vlm_attributes:
        raise RuntimeError("no drop has VLM attributes yet: materialize raw_vlm_attributes for a drop first")
    drops = sorted(raw_vlm_attributes)
    context.log.info(f"release {context.partition_key}: curating the labels of {len(drops)} drops: {', '.join(drops)}")
    landed = landed_drops(context.instance)
    raw = concat_partitions(raw_vlm_attributes, landed)

    def of_labelled_drops(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
        return concat_partitions({d: f for d, f in frames.items() if d in raw_vlm_attributes}, landed)

    ground_truth = of_labelled_drops(catalog_ground_truth)
    titles = of_labelled_drops(catalog_products).select("product_id", "title")
    brands = find_brands(titles["title"])
    types = title_product_types(titles, modifier_words(raw, brands), config.min_title_type_products)
    context.log.info(f"{len(types.types)} product types named in {titles.height} titles; "
                     f"{len(types.covered)} one-word phrases covered by them")
    encode = minilm_encoder()
    judge = models.judge()
    started = time.perf_counter()

    def judge_all(questions: list) -> list[float]:
        """The judge's answers, one question per slot at a time, with progress in the run's log."""
        progress = Progress(context.log.info, "vocabulary judge", len(questions), unit="questions")
        return judge.map(progress.counted(judge.yes_probability), questions)

    result = curate(raw, encode, judge_all, CurationConfig(
        min_support=config.min_support, merge_distance=config.merge_distance, judge_threshold=config.judge_threshold),
        brands=brands, product_types=types)
    seconds = time.perf_counter() - started
    kept = kept_vocabulary(result.vocabulary)
    coverage = vocabulary_coverage(result.vocabulary, ground_truth, encode)
    merges = result.vocabulary.filter(pl.col("judge_score").is_not_null())["merged"]
    top = kept.sort(["facet", "support"], descending=[False, True]).group_by("facet", maintain_order=True).head(30)
    context.log.info(f"vocabulary: {kept.height} phrases kept of {result.vocabulary.height} in {seconds:.0f}s")
    return dg.Output(result.vocabulary.with_columns(pl.lit(json.dumps(drops)).alias("release_drops")), metadata={
        "dagster/row_count": result.vocabulary.height,
        "drops": dg.MetadataValue.json(drops),
        "labelled_products": raw["product_id"].n_unique(),
        "kept": kept.height,
        **{f"size_{step}": size for step, size in result.steps.items()},
        "mean_phrases_per_cluster": round(float(merges.mean()), 3) if merges.len() else 0.0,
        "max_phrases_per_cluster": int(merges.max()) if merges.len() else 0,
        "coverage": coverage["coverage"],
        "coverage_per_facet": dg.MetadataValue.json(coverage["per_facet"]),
        "coverage_missing": dg.MetadataValue.json(coverage["missing"]),
        "brand_names_found": len(brands.names),
        "product_types_from_titles": dg.MetadataValue.json(types.types),
        "product_type_aliases": dg.MetadataValue.json(types.aliases),
        "covered_by_product_types": dg.MetadataValue.json(types.covered),
        "dropped_as_brand": dg.MetadataValue.json(sorted(result.vocabulary.filter(
            pl.col("reason").str.starts_with("brand:"))["phrase"].to_list())),
        "judge_model": judge.model_name,
        "judge_slots": judge.slots,
        "judge_seconds": round(seconds, 1),
        "vocabulary_map": figure_markdown(vocabulary_map(kept, encode)),
        "top_per_facet": table_preview(top, rows=200, columns=["facet", "phrase", "aliases", "support", "judge_score"]),
        "dropped_by_judge": table_preview(result.vocabulary.filter(
            (pl.col("decision") == "drop") & pl.col("judge_score").is_not_null()), rows=30,
            columns=["facet", "phrase", "support", "searchable", "coherent"]),
    })
