"""The encoder's image preprocessing without torch: what Ray's CPU decode tasks run.

The same steps as open_clip's evaluation transform for this model (torchvision Resize of the shorter
side, CenterCrop, ToTensor, Normalize), written with PIL and numpy so a decode worker starts in a
fraction of a second instead of importing torch and open_clip (seconds per worker on 2 CPUs).
The encoder tests check it against open_clip's own transform.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                  "nearest": Image.Resampling.NEAREST}


def preprocess_image(image: Image.Image, cfg: dict[str, Any]) -> np.ndarray:
    """(3, H, W) float32, normalised; ``cfg`` is open_clip's preprocess config (resize_mode 'shortest')."""
    if cfg.get("resize_mode", "shortest") != "shortest":
        raise ValueError(f"resize mode {cfg['resize_mode']!r} is not supported by the torch-free preprocessing")
    height, width = cfg["size"] if isinstance(cfg["size"], (tuple, list)) else (cfg["size"], cfg["size"])
    side = min(height, width)
    image = image.convert("RGB")
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = side, int(side * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    if size != (w, h):
        image = image.resize(size, INTERPOLATIONS[cfg.get("interpolation", "bicubic")])
    w, h = image.size
    left, top = int(round((w - width) / 2.0)), int(round((h - height) / 2.0))
    image = image.crop((left, top, left + width, top + height))
    array = np.asarray(image, np.float32).transpose(2, 0, 1) / 255.0
    mean = np.asarray(cfg["mean"], np.float32)[:, None, None]
    std = np.asarray(cfg["std"], np.float32)[:, None, None]
    return ((array - mean) / std).astype(np.float32)


def decode_images(paths, blank, cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (n, 3, H, W) float32, usable (n,) bool): unreadable or blank images are zeros, not usable."""
    height, width = cfg["size"] if isinstance(cfg["size"], (tuple, list)) else (cfg["size"], cfg["size"])
    pixels = np.zeros((len(paths), 3, height, width), np.float32)
    usable = np.zeros(len(paths), bool)
    for i, (path, is_blank) in enumerate(zip(paths, blank)):
        if is_blank:
            continue
        try:
            with Image.open(path) as image:
                pixels[i] = preprocess_image(image, cfg)
                usable[i] = True
        except Exception:
            continue
    return pixels, usable


def preprocess_for_encoder(batch: dict[str, np.ndarray], preprocess_cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """Ray CPU stage: decode and preprocess, one (n, 3, H, W) tensor per batch (Ray keeps it as a
    tensor column, never as Python floats)."""
    blank = batch["is_blank"] if "is_blank" in batch else np.zeros(len(batch["product_id"]), bool)
    pixels, usable = decode_images(batch["image_path"], [bool(b) if b is not None else False for b in blank],
                                   preprocess_cfg)
    return {"product_id": batch["product_id"], "title": batch["title"], "pixels": pixels, "has_image": usable}
