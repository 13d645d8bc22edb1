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

from pinlanding_assets.encoder.model import EMBED_DIM, DualEncoder, EncoderSpec

VECTOR = pa.list_(pa.float32(), EMBED_DIM)
PRODUCT_SCHEMA = pa.schema([
    ("product_id", pa.string()), ("embedding", VECTOR), ("image_embedding", VECTOR), ("text_embedding", VECTOR),
    ("image_used", pa.bool_()), ("model_version", pa.string()),
])
PHRASE_SCHEMA = pa.schema([("attribute_id", pa.string()), ("embedding", VECTOR), ("model_version", pa.string())])


def preprocess_for_encoder(batch: pa.Table, preprocess_cfg: dict[str, Any]) -> pa.Table:
    """CPU stage: open_clip's evaluation transform; unreadable or blank images become a null."""
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    transform = image_transform_v2(PreprocessCfg(**preprocess_cfg), is_train=False)
    blank = batch.column("is_blank").to_pylist() if "is_blank" in batch.column_names else [False] * batch.num_rows
    pixels = []
    for path, is_blank in zip(batch.column("image_path").to_pylist(), blank):
        try:
            if is_blank:
                raise ValueError("blank image")
            with Image.open(path) as image:
                pixels.append(transform(image.convert("RGB")).numpy().reshape(-1))
        except Exception:
            pixels.append(None)
    return batch.append_column("pixels", pa.array(pixels, type=pa.list_(pa.float32())))


class ProductEncoder:
    """Ray Data model stage: one dual encoder per actor."""

    def __init__(self, spec_json: str, cache_dir: str, version: str, threads: int = 1) -> None:
        torch.set_num_threads(max(1, threads))
        self.encoder = DualEncoder(EncoderSpec(**json.loads(spec_json)), Path(cache_dir))
        self.version = version

    def __call__(self, batch: pa.Table) -> pa.Table:
        pixels = batch.column("pixels").to_pylist()
        has_image = torch.tensor([p is not None for p in pixels])
        stacked = torch.from_numpy(np.stack([
            np.asarray(p, np.float32) if p is not None else np.zeros(3 * 224 * 224, np.float32) for p in pixels
        ])).view(-1, 3, 224, 224)
        with torch.no_grad():
            image = self.encoder.image_head(self.encoder.image_trunk_features(stacked))
            text = self.encoder.text_head(self.encoder.text_trunk_features(batch.column("title").to_pylist()))
            fused = self.encoder.fuse(image, text, has_image)
        image = torch.where(has_image.unsqueeze(-1), image, torch.zeros_like(image))

        def vectors(tensor: torch.Tensor) -> pa.Array:
            return pa.FixedSizeListArray.from_arrays(pa.array(tensor.numpy().astype(np.float32).reshape(-1)), EMBED_DIM)

        return pa.Table.from_arrays([
            batch.column("product_id"), vectors(fused), vectors(image), vectors(text),
            pa.array(has_image.tolist()), pa.array([self.version] * batch.num_rows),
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
    products: pa.Table, spec: EncoderSpec, cache_dir: Path, version: str, preprocess_cfg: dict[str, Any],
    stage_options: dict[str, Any], threads: int = 1, batch_size: int = 32,
) -> pa.Table:
    from resources.ray_pool import arrow_dataset, collect_sorted

    if products.num_rows == 0:
        return PRODUCT_SCHEMA.empty_table()
    dataset = (
        arrow_dataset(products, batch_size)
        .map_batches(preprocess_for_encoder, fn_kwargs={"preprocess_cfg": preprocess_cfg}, batch_format="pyarrow",
                     batch_size=batch_size, num_cpus=0.5)
        .map_batches(ProductEncoder, fn_constructor_kwargs={
            "spec_json": spec.to_json(), "cache_dir": str(cache_dir), "version": version, "threads": threads},
            batch_format="pyarrow", batch_size=batch_size, **stage_options)
    )
    return collect_sorted(dataset, PRODUCT_SCHEMA, "product_id")


def embed_phrases_with_ray(
    phrases: pa.Table, spec: EncoderSpec, cache_dir: Path, version: str, stage_options: dict[str, Any],
) -> pa.Table:
    from resources.ray_pool import arrow_dataset, collect_sorted

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
