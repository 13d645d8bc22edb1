"""Embedding every product and attribute once, as Ray Data streaming jobs:

    products -> CPU stage: decode + open_clip preprocessing -> actor pool: dual encoder -> Parquet

Each row keeps the fused (image + title), image-only and title-only vectors and the model version.
A product whose image is unusable is embedded from its title alone and marked ``image_used=False``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from pinlanding_assets.encoder.model import EMBED_DIM, DualEncoder
from pinlanding_assets.encoder.pixels import preprocess_for_encoder
from pinlanding_assets.encoder.records import EncoderSpec
from resources.storage import StagedParquet

VECTOR = pa.list_(pa.float32(), EMBED_DIM)
PRODUCT_SCHEMA = pa.schema([
    ("product_id", pa.string()), ("embedding", VECTOR), ("image_embedding", VECTOR), ("text_embedding", VECTOR),
    ("image_used", pa.bool_()), ("model_version", pa.string()), ("release", pa.string()),
])
PHRASE_SCHEMA = pa.schema([("attribute_id", pa.string()), ("embedding", VECTOR), ("model_version", pa.string())])


def encode_batch(encoder: DualEncoder, pixels: torch.Tensor, has_image: torch.Tensor,
                 titles: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(fused, image-only, title-only) unit vectors of one batch: the one embedding path of the Ray
    stage and the in-process evaluation."""
    with torch.no_grad():
        image = encoder.image_head(encoder.image_features(pixels))
        text = encoder.text_head(encoder.text_trunk_features(titles))
        return encoder.fuse(image, text, has_image), image, text


def _vectors(matrix: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.astype(np.float32).reshape(-1)), EMBED_DIM)


class ProductEncoder:
    """Ray Data model stage: one dual encoder per actor, with as many torch threads as CPUs it holds."""

    def __init__(self, spec_json: str, cache_dir: str, version: str, release: str, threads: int = 1) -> None:
        torch.set_num_threads(max(1, threads))
        self.encoder = DualEncoder(EncoderSpec(**json.loads(spec_json)), Path(cache_dir))
        self.version, self.release = version, release

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        has_image = torch.from_numpy(np.asarray(batch["has_image"], bool))
        fused, image, text = encode_batch(self.encoder, torch.from_numpy(np.ascontiguousarray(batch["pixels"])),
                                          has_image, [str(t) for t in batch["title"]])
        image = torch.where(has_image.unsqueeze(-1), image, torch.zeros_like(image))
        rows = len(batch["product_id"])
        return pa.Table.from_arrays([
            pa.array(list(batch["product_id"]), pa.string()), _vectors(fused.numpy()), _vectors(image.numpy()),
            _vectors(text.numpy()), pa.array(has_image.numpy()), pa.array([self.version] * rows, pa.string()),
            pa.array([self.release] * rows, pa.string()),
        ], schema=PRODUCT_SCHEMA)


class PhraseEncoder:
    """Ray Data model stage for attribute phrases (the text tower and its head)."""

    def __init__(self, spec_json: str, cache_dir: str, version: str) -> None:
        self.encoder = DualEncoder(EncoderSpec(**json.loads(spec_json)), Path(cache_dir))
        self.version = version

    def __call__(self, batch: pa.Table) -> pa.Table:
        vectors = self.encoder.encode_phrases(batch.column("phrase").to_pylist()).astype(np.float32)
        return pa.Table.from_arrays([
            batch.column("attribute_id"), pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), EMBED_DIM),
            pa.array([self.version] * batch.num_rows),
        ], schema=PHRASE_SCHEMA)


def embed_products_with_ray(
    products: pa.Table, spec: EncoderSpec, cache_dir: Path, version: str, release: str, preprocess_cfg: dict[str, Any],
    stage_options: dict[str, Any], staging: Path, threads: int = 1, batch_size: int = 8, decode_cpus: float = 0.5,
) -> StagedParquet:
    """Products (sorted by id) -> CPU decode tasks (torch-free) -> encoder actors -> Parquet under ``staging``,
    written by Ray. A failed job raises and leaves whatever ``staging`` holds unused.

    Batches of 8: EfficientNet-Lite0 on CPU runs fastest per product at 8-16 images (larger batches
    fall out of cache: 20 ms a product at 32, 35 at 64, 11 at 8 with 2 threads; benchmarks/embeddings.py)."""
    from resources.tables import arrow_dataset, write_parquet_parts

    dataset = (
        arrow_dataset(products.sort_by("product_id"), batch_size)
        .map_batches(preprocess_for_encoder, fn_kwargs={"preprocess_cfg": preprocess_cfg}, batch_format="numpy",
                     batch_size=batch_size, num_cpus=decode_cpus)
        .map_batches(ProductEncoder, fn_constructor_kwargs={
            "spec_json": spec.to_json(), "cache_dir": str(cache_dir), "version": version, "release": release,
            "threads": threads},
            batch_format="numpy", batch_size=batch_size, **stage_options)
    )
    write_parquet_parts(dataset, staging, PRODUCT_SCHEMA)
    return StagedParquet(staging)


def embed_phrases_with_ray(
    phrases: pa.Table, spec: EncoderSpec, cache_dir: Path, version: str, stage_options: dict[str, Any],
) -> pa.Table:
    from resources.tables import arrow_dataset, collect_sorted

    if phrases.num_rows == 0:
        return PHRASE_SCHEMA.empty_table()
    dataset = arrow_dataset(phrases.select(["attribute_id", "phrase"]), 256).map_batches(
        PhraseEncoder, fn_constructor_kwargs={"spec_json": spec.to_json(), "cache_dir": str(cache_dir),
                                              "version": version},
        batch_format="pyarrow", batch_size=256, **stage_options)
    return collect_sorted(dataset, PHRASE_SCHEMA, "attribute_id")


def phrase_rejection(tokenizer, phrase: str) -> str | None:
    """Why a vocabulary phrase cannot be embedded, or None: it must tokenise to some real token."""
    if not phrase.strip():
        return "empty phrase"
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None:
        tokens = inner.tokenize(phrase)
        if not tokens or all(t == inner.unk_token for t in tokens):
            return "phrase tokenises to nothing the text tower knows"
    return None
