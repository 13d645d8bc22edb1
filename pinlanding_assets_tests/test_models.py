"""The offline models load for real, from their packages, verified by SHA-256."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resources import models
from resources.models import FAST_LLM, LLM_MODELS, GGUFModel, ModelFileError, gguf_path


def test_gguf_is_assembled_verified_and_repaired(tmp_path: Path) -> None:
    path = gguf_path(FAST_LLM, cache_dir=tmp_path)
    assert path.stat().st_size == LLM_MODELS[FAST_LLM].size
    with path.open("r+b") as handle:  # corrupt the cached file in place, same size
        handle.seek(1000)
        handle.write(b"\x00" * 64)
    assert gguf_path(FAST_LLM, cache_dir=tmp_path) == path
    assert models.sha256_of(path) == LLM_MODELS[FAST_LLM].sha256


def test_missing_chunk_package_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = GGUFModel("no-such-model", "pinlanding-no-such-part", 3, "0" * 64, 10)
    monkeypatch.setitem(LLM_MODELS, missing.name, missing)
    with pytest.raises(ModelFileError, match="package pinlanding-no-such-part1 is not installed"):
        gguf_path(missing.name, cache_dir=tmp_path)


def test_wrong_hash_refuses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = LLM_MODELS[FAST_LLM]
    tampered = GGUFModel("tampered", real.distribution, real.parts, "f" * 64, real.size)
    monkeypatch.setitem(LLM_MODELS, tampered.name, tampered)
    with pytest.raises(ModelFileError, match="reinstall the chunk packages"):
        gguf_path(tampered.name, cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.gguf")), "a file that failed verification is not left behind"


def test_unknown_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="unknown LLM"):
        gguf_path("gpt-17", tmp_path)


def test_efficientnet_lite0_recognises_a_tshirt(fashion_dir: Path) -> None:
    from timm.data import ImageNetInfo, create_transform, resolve_data_config

    model = models.load_efficientnet_lite()
    transform = create_transform(**resolve_data_config({}, model=model))
    image = transform(Image.open(fashion_dir / "images" / "1855.jpg").convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        top = int(model(image).argmax())
    assert "T-shirt" in ImageNetInfo().index_to_description(top)


def test_minilm_embeds_offline() -> None:
    encoder = models.load_minilm()
    vectors = encoder.encode(["t-shirt", "t shirt", "handbag"], normalize_embeddings=True)
    assert vectors.shape == (3, 384)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.3
    assert np.isfinite(vectors).all()
