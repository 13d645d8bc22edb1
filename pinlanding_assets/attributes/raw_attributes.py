"""Candidate attributes for a sample of a drop's products, as a Ray Data streaming job:

    sample -> CPU stage: decode + resize + normalise images -> actor pool: backbone labels + LLM/VLM
           -> long table (product, facet, value) + quarantine (raw output, reason)

The sample is chosen for coverage (``coverage_order``): product types, read from the last word of the
title, share the sample in proportion to the square root of their size, so every type is reached before a
common type gets its second product; within a type the order is a salted hash of the product id. The
order depends only on the drop's products, so re-materializing a drop picks the same products, and a
larger sample is a superset of a smaller one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from pinlanding_assets.attributes.vlm import Extraction, ProductEvidence
from pinlanding_assets.facets import normalise_value

IMAGE_SIDE = 224
TOP_IMAGENET_LABELS = 3
ATTRIBUTE_SCHEMA = {
    "drop": pl.Utf8, "product_id": pl.Utf8, "facet": pl.Utf8, "value": pl.Utf8, "rank": pl.Int32,
    "backend": pl.Utf8, "model": pl.Utf8,
}
QUARANTINE_SCHEMA = {
    "drop": pl.Utf8, "product_id": pl.Utf8, "reason": pl.Utf8, "raw": pl.Utf8, "backend": pl.Utf8, "model": pl.Utf8,
}
RESULT_SCHEMA = pa.schema([
    ("product_id", pa.string()), ("attributes", pa.string()), ("raw", pa.string()), ("error", pa.string()),
    ("attempts", pa.int32()), ("backend", pa.string()), ("model", pa.string()), ("image_labels", pa.list_(pa.string())),
    ("instruction_text_removed", pa.bool_()),
])


def title_type(title: str | None) -> str:
    """The product type a title names, approximated by its last word (singular): titles end in their type."""
    words = re.findall(r"[a-z][a-z'-]*", (title or "").lower())
    return normalise_value("category", words[-1]) if words else ""


def hash_order(products: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """Products in the order of a salted hash of their id: a uniform random order that never changes."""
    keys = [hashlib.sha1(f"{seed}:{pid}".encode()).hexdigest() for pid in products["product_id"]]
    return products.with_columns(pl.Series("_key", keys)).sort("_key", "product_id").drop("_key")


def coverage_order(products: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """Products ordered so that any prefix covers the drop's product types: the k-th product of a type of
    size n comes at position k / sqrt(n) (ties by hash), i.e. types share a prefix in proportion to sqrt(n)."""
    ordered = hash_order(products, seed).with_row_index("_hash_rank").with_columns(
        pl.col("title").map_elements(title_type, return_dtype=pl.Utf8).alias("_type"))
    return ordered.with_columns(
        (pl.col("_hash_rank").rank("ordinal").over("_type").cast(pl.Float64) - 1.0)
        .truediv(pl.len().over("_type").cast(pl.Float64).sqrt()).alias("_position")
    ).sort("_position", "_hash_rank").drop("_hash_rank", "_type", "_position")


def sample_products(products: pl.DataFrame, size: int | None, seed: int = 0) -> pl.DataFrame:
    """The first ``size`` products of ``coverage_order`` (None = all), sorted by id."""
    if size is None or size >= products.height:
        return products.sort("product_id")
    return coverage_order(products, seed).head(size).sort("product_id")


def sample_size(budget_seconds: float, products_per_second: float, available: int) -> int:
    """How many products the VLM stage can label within its time budget (at least one)."""
    if budget_seconds <= 0 or products_per_second <= 0:
        raise ValueError("the attribute stage's time budget and expected rate must be positive")
    return max(1, min(available, int(budget_seconds * products_per_second)))


def preprocess_images(batch: pa.Table) -> pa.Table:
    """CPU stage: decode each image once, resize to the backbone's input, normalise to [-1, 1].

    A product whose image cannot be read keeps its row with no pixels: it is labelled from text alone.
    """
    from PIL import Image

    pixels = []
    for path in batch.column("image_path").to_pylist():
        try:
            with Image.open(path) as image:
                image.draft("RGB", (IMAGE_SIDE * 2, IMAGE_SIDE * 2))
                array = np.asarray(image.convert("RGB").resize((IMAGE_SIDE, IMAGE_SIDE), Image.BICUBIC), np.float32)
            pixels.append(((array / 127.5) - 1.0).transpose(2, 0, 1).reshape(-1))
        except Exception:
            pixels.append(None)
    return batch.append_column("pixels", pa.array(pixels, type=pa.list_(pa.float32())))


def imagenet_label_names() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(1000)]


def build_backend(spec: dict[str, Any]):
    from pinlanding_assets.attributes import vlm

    if spec["backend"] == "offline":
        from pathlib import Path

        from resources.llm import LocalLLM

        return vlm.OfflineLLMBackend(LocalLLM(Path(spec["gguf"]), threads=spec["threads"], slots=spec.get("slots", 1)))
    if spec["backend"] == "vllm":
        return vlm.VLLMBackend(spec["url"], spec["model"], api_key=spec.get("api_key", "EMPTY"))
    if spec["backend"] == "transformers":
        return vlm.TransformersVLMBackend(spec["checkpoint"])
    raise ValueError(f"unknown attribute backend {spec['backend']!r}")


class AttributeExtractor:
    """Ray Data model stage: one backend (one LLM) per actor; the offline backend also reads the
    image through EfficientNet-Lite0 for ImageNet labels."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(max(1, int(spec.get("threads", 1))))
        self.backend = build_backend(spec)
        self.backbone = None
        if spec["backend"] == "offline":
            from resources.models import load_efficientnet_lite

            self.backbone = load_efficientnet_lite()
            self.labels = imagenet_label_names()

    def _image_labels(self, pixels: list[np.ndarray | None]) -> list[list[str]]:
        import torch

        out: list[list[str]] = [[] for _ in pixels]
        present = [i for i, p in enumerate(pixels) if p is not None]
        if self.backbone is None or not present:
            return out
        batch = torch.from_numpy(np.stack([np.asarray(pixels[i], np.float32) for i in present]))
        with torch.no_grad():
            probs = self.backbone(batch.view(-1, 3, IMAGE_SIDE, IMAGE_SIDE)).softmax(-1)
        top = probs.topk(TOP_IMAGENET_LABELS, dim=-1)
        for row, i in enumerate(present):
            out[i] = [self.labels[int(j)] for j, p in zip(top.indices[row], top.values[row]) if float(p) >= 0.05]
        return out

    def __call__(self, batch: pa.Table) -> pa.Table:
        pixels = batch.column("pixels").to_pylist()
        labels = self._image_labels(pixels)
        evidence = [
            ProductEvidence(
                product_id=record["product_id"], title=record["title"] or "",
                description=record.get("description") or "", image_path=record["image_path"],
                image_labels=tuple(labels[index]), image_colours=tuple(record.get("image_colours") or ()),
            )
            for index, record in enumerate(batch.drop_columns(["pixels"]).to_pylist())
        ]
        results = self.backend.map(self._extract, evidence)
        rows = [{
            "product_id": product.product_id, "attributes": json.dumps(result.attributes, sort_keys=True),
            "raw": result.raw, "error": result.error, "attempts": result.attempts,
            "backend": result.backend, "model": result.model, "image_labels": labels[index],
            "instruction_text_removed": product.has_instruction_text,
        } for index, (product, result) in enumerate(zip(evidence, results))]
        return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)

    def _extract(self, product: ProductEvidence) -> Extraction:
        try:
            result = self.backend.extract(product)
        except Exception as exc:  # a failing call quarantines this product, not the batch
            return Extraction(product.product_id, self.backend.name, self.backend.model,
                              error=f"backend error: {type(exc).__name__}: {exc}")
        if result.product_id != product.product_id:
            raise RuntimeError(f"answer for {result.product_id} returned for {product.product_id}")
        return result


def extract_with_ray(inputs: pa.Table, spec: dict[str, Any], stage_options: dict[str, Any], batch_size: int = 4,
                     on_rows: Callable[[int], None] | None = None) -> pa.Table:
    """Run the job; rows come back sorted by product id whatever order the actors finished in."""
    from resources.tables import arrow_dataset, collect_sorted

    if inputs.num_rows == 0:
        return RESULT_SCHEMA.empty_table()
    dataset = (
        arrow_dataset(inputs, batch_size, max_blocks=32)
        .map_batches(preprocess_images, batch_format="pyarrow", batch_size=batch_size, num_cpus=0.25)
        .map_batches(AttributeExtractor, fn_constructor_kwargs={"spec": spec}, batch_format="pyarrow",
                     batch_size=batch_size, **stage_options)
    )
    return collect_sorted(dataset, RESULT_SCHEMA, "product_id", on_rows)


def split_results(drop: str, results: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Long (product, facet, value) rows for parsed output; quarantine rows for the rest."""
    attributes, quarantine = [], []
    for row in results.iter_rows(named=True):
        if row["error"]:
            quarantine.append({"drop": drop, "product_id": row["product_id"], "reason": row["error"],
                               "raw": row["raw"], "backend": row["backend"], "model": row["model"]})
            continue
        for facet, values in sorted(json.loads(row["attributes"]).items()):
            for rank, value in enumerate(values):
                attributes.append({"drop": drop, "product_id": row["product_id"], "facet": facet, "value": value,
                                   "rank": rank, "backend": row["backend"], "model": row["model"]})
    return pl.DataFrame(attributes, schema=ATTRIBUTE_SCHEMA), pl.DataFrame(quarantine, schema=QUARANTINE_SCHEMA)
