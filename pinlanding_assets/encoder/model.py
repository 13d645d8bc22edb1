"""The dual encoder, built through open_clip's own API from offline weights.

The default architecture ``pinlanding-effnetlite0-minilm`` is an open_clip model config whose image
tower is timm ``tf_efficientnet_lite0`` (ImageNet weights from the offline package) and whose text
tower is all-MiniLM-L6-v2 (HF weights from the offline package), each with open_clip's projection
head into one 256-d space. Any other open_clip model name (e.g. ``ViT-B-32``) plus a checkpoint path
drops in through ``EncoderSpec`` alone.

Products are encoded by fusing the image with the title (a weighted sum of the two unit vectors);
attribute phrases by the text tower. The image side also sees the product's colour: a foreground
colour histogram of its input pixels (``colour.py``) mapped linearly into the image head's output.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pinlanding_assets.encoder.colour import COLOUR_BINS, colour_descriptor
from pinlanding_assets.encoder.records import DEFAULT_ARCH, EncoderSpec
from resources.files import written_whole

# The project's architectures: EfficientNet-Lite variant and its ImageNet input side, MiniLM text.
ARCHITECTURES = {DEFAULT_ARCH: (0, 224), "pinlanding-effnetlite2-minilm": (2, 260)}
EMBED_DIM = 256


def register_architecture(cache_dir: Path, text_tower_dir: Path | None = None, name: str = DEFAULT_ARCH) -> str:
    """Write and register the open_clip config of one of the project's architectures (paths are machine-local)."""
    import open_clip

    if text_tower_dir is None:
        from resources.models import minilm_dir

        text_tower_dir = minilm_dir()
    minilm = str(text_tower_dir)
    variant, side = ARCHITECTURES[name]
    config = {
        "embed_dim": EMBED_DIM,
        "vision_cfg": {"timm_model_name": f"tf_efficientnet_lite{variant}", "timm_model_pretrained": False,
                       "timm_pool": "avg", "timm_proj": "linear", "image_size": side},
        "text_cfg": {"hf_model_name": minilm, "hf_tokenizer_name": minilm, "hf_proj_type": "mlp",
                     "hf_pooler_type": "mean_pooler", "context_length": 32},
        "custom_text": True,
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{name}.json"
    text = json.dumps(config, indent=2, sort_keys=True)
    if not path.is_file() or path.read_text() != text:
        with written_whole(path) as staging:  # encoder actors start side by side: none may read half of it
            staging.write_text(text)
    open_clip.add_model_config(path)
    return name


class DualEncoder:
    """An open_clip model plus its transforms and tokenizer, with product/attribute encoders."""

    def __init__(self, spec: EncoderSpec, cache_dir: Path, device: str = "cpu", text_tower_dir: Path | None = None,
                 random_weights: bool = False) -> None:
        """``random_weights`` builds the architecture without loading any weights: only for measuring
        speed on a machine that lacks the weight packages (a lent GPU)."""
        import open_clip

        own = spec.model_name in ARCHITECTURES
        if own:
            register_architecture(cache_dir, text_tower_dir, spec.model_name)
        fresh = spec.checkpoint is None and not random_weights
        # EfficientNet-Lite was trained on inputs scaled to [-1, 1]; other models keep open_clip's defaults.
        preprocessing = (
            {"image_mean": (0.5, 0.5, 0.5), "image_std": (0.5, 0.5, 0.5), "image_interpolation": "bicubic"}
            if own else {}
        )
        torch.manual_seed(spec.seed)  # the projection heads are initialised from the global RNG
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            spec.model_name, pretrained=None, device=device, pretrained_text=fresh, **preprocessing,
        )
        self.tokenizer = open_clip.get_tokenizer(spec.model_name, context_length=spec.context_length)
        if own and fresh:
            self._load_image_backbone(ARCHITECTURES[spec.model_name][0])
        cfg = open_clip.get_model_preprocess_cfg(self.model)
        self._pixel_mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
        self._pixel_std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
        if spec.colour_descriptor:
            # Starts at zero: a fresh encoder embeds as one without colour until training teaches the map.
            self.model.visual.colour_proj = torch.nn.Linear(COLOUR_BINS, EMBED_DIM, bias=False)
            torch.nn.init.zeros_(self.model.visual.colour_proj.weight)
        self.model.to(device)
        if spec.checkpoint:
            load_checkpoint(self.model, Path(spec.checkpoint), spec)
        self.model.eval()
        self.spec = spec
        self.device = device

    def _load_image_backbone(self, variant: int) -> None:
        from resources.models import load_efficientnet_lite

        backbone = load_efficientnet_lite(variant).state_dict()
        weights = {k: v for k, v in backbone.items() if not k.startswith("classifier.")}
        missing, unexpected = self.model.visual.trunk.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"EfficientNet-Lite{variant} weights do not fit the image tower: "
                               f"{missing[:3]} {unexpected[:3]}")

    # Frozen-tower features (cached for training) and the trainable heads on top of them.
    @torch.no_grad()
    def image_trunk_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.visual.trunk(pixels.to(self.device))

    @torch.no_grad()
    def colour_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The colour descriptor of normalised input pixels ((n, 0) when the spec has none)."""
        if not self.spec.colour_descriptor:
            return torch.zeros(len(pixels), 0, device=self.device)
        rgb = (pixels.cpu() * self._pixel_std + self._pixel_mean).clamp(0, 1)
        return colour_descriptor(rgb).to(self.device)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """What ``image_head`` reads: the trunk's pooled features, then the colour descriptor."""
        return torch.cat([self.image_trunk_features(pixels), self.colour_features(pixels)], dim=-1)

    def _trunk_stages(self) -> tuple[list[torch.nn.Module], list[torch.nn.Module]]:
        trunk = self.model.visual.trunk
        if not hasattr(trunk, "blocks") or not hasattr(trunk, "conv_stem"):
            raise ValueError(f"unfreezing image blocks needs an EfficientNet-style timm trunk, not {type(trunk).__name__}")
        return [trunk.conv_stem, trunk.bn1], [trunk.conv_head, trunk.bn2, trunk.global_pool]

    @torch.no_grad()
    def image_stem_features(self, pixels: torch.Tensor, open_blocks: int) -> torch.Tensor:
        """Activations before the last ``open_blocks`` stages of the image trunk (the whole trunk's
        pooled output when 0): what training caches when those stages are unfrozen."""
        if open_blocks == 0:
            return self.image_trunk_features(pixels)
        head, _ = self._trunk_stages()
        x = pixels.to(self.device)
        for layer in [*head, *self.model.visual.trunk.blocks[:-open_blocks]]:
            x = layer(x)
        return x

    def image_tail(self, stem: torch.Tensor, open_blocks: int) -> torch.Tensor:
        """The rest of the trunk from ``image_stem_features``: trunk(pixels) == tail(stem(pixels))."""
        if open_blocks == 0:
            return stem
        _, tail = self._trunk_stages()
        x = stem
        for layer in [*self.model.visual.trunk.blocks[-open_blocks:], *tail]:
            x = layer(x)
        return x

    def open_image_parameters(self, open_blocks: int) -> list[torch.nn.Parameter]:
        if open_blocks == 0:
            return []
        _, tail = self._trunk_stages()
        modules = [*self.model.visual.trunk.blocks[-open_blocks:], *tail]
        return [p for module in modules for p in module.parameters()]

    @torch.no_grad()
    def text_trunk_features(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        text = self.model.text
        attention = (tokens != text.config.pad_token_id).long()
        output = text.transformer(input_ids=tokens, attention_mask=attention)
        return text.pooler(output, attention)

    def image_head(self, features: torch.Tensor) -> torch.Tensor:
        """Unit image vectors from ``image_features`` (trunk features, then colour when the spec has it)."""
        if not self.spec.colour_descriptor:
            return F.normalize(self.model.visual.head(features), dim=-1)
        trunk, colour = features[:, :-COLOUR_BINS], features[:, -COLOUR_BINS:]
        return F.normalize(self.model.visual.head(trunk) + self.model.visual.colour_proj(colour), dim=-1)

    def text_head(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.text.proj(features), dim=-1)

    def fuse(self, image: torch.Tensor, text: torch.Tensor, has_image: torch.Tensor) -> torch.Tensor:
        """Weighted sum of unit image and title vectors; title alone where there is no usable image."""
        w = self.spec.image_weight * has_image.float().unsqueeze(-1)
        return F.normalize(w * image + (1 - w) * text, dim=-1)

    @torch.no_grad()
    def encode_phrases(self, phrases: list[str]) -> np.ndarray:
        if not phrases:
            return np.zeros((0, EMBED_DIM), np.float32)
        return self.text_head(self.text_trunk_features(phrases)).cpu().numpy()


def state_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(model: torch.nn.Module, spec: EncoderSpec, path: Path, extra: dict) -> str:
    """State dict + the spec it belongs to; the version is the hash of the weights."""
    version = state_digest(model)[:16]
    with written_whole(path) as staging:
        torch.save({"state_dict": model.state_dict(), "spec": asdict(spec), "version": version, **extra}, staging)
    return version


def write_checkpoint(model: torch.nn.Module, spec: EncoderSpec, directory: Path, extra: dict) -> tuple[str, Path]:
    """The checkpoint of a release as ``<directory>/<version>.pt`` (written whole or not at all)."""
    path = directory / f"{state_digest(model)[:16]}.pt"
    return save_checkpoint(model, spec, path, extra), path


def load_checkpoint(model: torch.nn.Module, path: Path, spec: EncoderSpec) -> dict:
    """Load weights, failing loudly if the checkpoint was made for another architecture."""
    if not path.is_file():
        raise FileNotFoundError(f"dual encoder checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    saved = payload.get("spec", {}).get("model_name")
    if saved != spec.model_name:
        raise ValueError(f"checkpoint {path} was trained for {saved!r}, not {spec.model_name!r}")
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} does not match model {spec.model_name!r}: {str(exc)[:300]}") from exc
    return payload
