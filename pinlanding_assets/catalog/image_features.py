"""Evidence read from each product image: decoded size, dominant colours named from pixels, and
blur / blank flags. Later stages (the offline VLM backend, the dual encoder) use it as input.

ImageNet features carry colour weakly, so colour is measured directly: background pixels (those
matching the image border) are masked. Studio shading makes black fabric look charcoal and white
fabric look grey, so low-chroma pixels are named Black / Grey / White by lightness alone, and only
chromatic pixels are matched to the hued palette in CIELAB space. On 300 real products whose label
is a plain colour this names the label among the top three 69% of the time (44% with one palette).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from PIL import Image

# Names follow the Fashion Product Images baseColour vocabulary so evidence and labels speak alike.
ACHROMATIC_CHROMA = 12.0
BLACK_BELOW_L, WHITE_ABOVE_L = 30.0, 70.0
PALETTE: dict[str, tuple[int, int, int]] = {
    "Navy Blue": (28, 36, 78), "Blue": (46, 96, 190), "Turquoise Blue": (64, 190, 200),
    "Teal": (20, 118, 120), "Red": (200, 32, 44), "Maroon": (112, 26, 40), "Pink": (236, 136, 172),
    "Magenta": (200, 40, 140), "Purple": (108, 54, 140), "Lavender": (180, 160, 214), "Green": (44, 140, 70),
    "Olive": (104, 108, 46), "Lime Green": (160, 210, 60), "Yellow": (240, 212, 48), "Mustard": (204, 160, 36),
    "Orange": (240, 128, 36), "Peach": (246, 190, 160), "Brown": (112, 70, 42), "Tan": (196, 150, 104),
    "Beige": (222, 204, 170), "Cream": (244, 236, 214), "Khaki": (186, 170, 120), "Gold": (200, 162, 60),
}
COLOUR_NAMES = (*PALETTE, "Black", "Grey", "White")  # every colour the image evidence names
_NAMES = list(COLOUR_NAMES)
_BLACK, _GREY, _WHITE = len(PALETTE), len(PALETTE) + 1, len(PALETTE) + 2
BLUR_THRESHOLD = 60.0
FEATURE_SCHEMA = pa.schema([
    ("product_id", pa.string()),
    ("decoded_width", pa.int32()),
    ("decoded_height", pa.int32()),
    ("dominant_colours", pa.list_(pa.string())),
    ("colour_shares", pa.list_(pa.float32())),
    ("foreground_share", pa.float32()),
    ("brightness", pa.float32()),
    ("sharpness", pa.float32()),
    ("is_blurry", pa.bool_()),
    ("is_blank", pa.bool_()),
    ("error", pa.string()),
])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (0-255, shape (..., 3)) to CIELAB under D65."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]])
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


_PALETTE_LAB = srgb_to_lab(np.array(list(PALETTE.values()), dtype=np.float64))


@dataclass(frozen=True)
class ImageEvidence:
    decoded_width: int
    decoded_height: int
    dominant_colours: list[str]
    colour_shares: list[float]
    foreground_share: float
    brightness: float
    sharpness: float
    is_blurry: bool
    is_blank: bool


def foreground_mask(rgb: np.ndarray, tolerance: float = 18.0) -> np.ndarray:
    """Pixels that differ from the border's median colour (catalog shots sit on a plain backdrop)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float64)
    backdrop = np.median(border, axis=0)
    distance = np.linalg.norm(srgb_to_lab(rgb) - srgb_to_lab(backdrop), axis=-1)
    return distance > tolerance


def name_colours(pixels: np.ndarray, top: int = 3, min_share: float = 0.08) -> tuple[list[str], list[float]]:
    """The palette names covering the most pixels, largest first (ties broken by name)."""
    if len(pixels) == 0:
        return [], []
    lab = srgb_to_lab(pixels)
    lightness, chroma = lab[:, 0], np.hypot(lab[:, 1], lab[:, 2])
    nearest = np.argmin(((lab[:, None, :] - _PALETTE_LAB[None, :, :]) ** 2).sum(-1), axis=1)
    achromatic = chroma < ACHROMATIC_CHROMA
    grey_level = np.where(lightness < BLACK_BELOW_L, _BLACK, np.where(lightness < WHITE_ABOVE_L, _GREY, _WHITE))
    nearest = np.where(achromatic, grey_level, nearest)
    counts = np.bincount(nearest, minlength=len(_NAMES)) / len(nearest)
    order = sorted(range(len(_NAMES)), key=lambda i: (-counts[i], _NAMES[i]))
    chosen = [i for i in order[:top] if counts[i] >= min_share] or order[:1]
    return [_NAMES[i] for i in chosen], [round(float(counts[i]), 4) for i in chosen]


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low means few edges, i.e. blurred or flat."""
    g = gray.astype(np.float64)
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var())


def describe_image(path: str, side: int = 96) -> ImageEvidence:
    """Decode once at reduced scale (JPEG draft mode) and measure colour, sharpness and blankness."""
    with Image.open(path) as image:
        image.draft("RGB", (side * 2, side * 2))
        rgb_full = np.asarray(image.convert("RGB"))
    decoded_height, decoded_width = rgb_full.shape[:2]
    small = np.asarray(Image.fromarray(rgb_full).resize((side, side), Image.BILINEAR))
    mask = foreground_mask(small)
    foreground_share = float(mask.mean())
    pixels = small[mask] if foreground_share >= 0.03 else small.reshape(-1, 3)
    colours, shares = name_colours(pixels)
    gray = np.asarray(Image.fromarray(rgb_full).convert("L").resize((256, 256), Image.BILINEAR))
    sharpness = laplacian_variance(gray)
    is_blank = float(gray.std()) < 4.0 or foreground_share < 0.005
    return ImageEvidence(
        decoded_width=int(decoded_width), decoded_height=int(decoded_height),
        dominant_colours=colours, colour_shares=shares, foreground_share=round(foreground_share, 4),
        brightness=round(float(gray.mean()) / 255.0, 4), sharpness=round(sharpness, 2),
        is_blurry=sharpness < BLUR_THRESHOLD and not is_blank, is_blank=is_blank,
    )


def describe_batch(batch: pa.Table) -> pa.Table:
    """Ray Data batch function: product ids carried over, one evidence row per input row, errors kept."""
    rows = []
    for product_id, path in zip(batch.column("product_id").to_pylist(), batch.column("image_path").to_pylist()):
        try:
            evidence = describe_image(path)
            rows.append({"product_id": product_id, **evidence.__dict__, "error": None})
        except Exception as exc:  # one bad image must not sink the batch: the row carries its reason
            rows.append({
                "product_id": product_id, "decoded_width": 0, "decoded_height": 0, "dominant_colours": [],
                "colour_shares": [], "foreground_share": 0.0, "brightness": 0.0, "sharpness": 0.0,
                "is_blurry": False, "is_blank": True, "error": f"{type(exc).__name__}: {exc}",
            })
    return pa.Table.from_pylist(rows, schema=FEATURE_SCHEMA)


def image_features_with_ray(products: pa.Table, batch_size: int = 128, cpus_per_task: float = 1.0,
                            on_rows: Callable[[int], None] | None = None) -> pa.Table:
    """Run ``describe_batch`` as a Ray Data job over the products' images; output sorted by id.

    Stateless tasks may take whole CPUs (only actors holding CPUs deadlock a 2-core pool); on 2 cores
    128-image batches at 1 CPU ran 1.5x the sequential loop, 64 at 0.5 CPU no faster than it.
    """
    from resources.tables import arrow_dataset, collect_sorted

    if products.num_rows == 0:
        return FEATURE_SCHEMA.empty_table()
    dataset = arrow_dataset(products.select(["product_id", "image_path"]), batch_size).map_batches(
        describe_batch, batch_format="pyarrow", batch_size=batch_size, num_cpus=cpus_per_task)
    return collect_sorted(dataset, FEATURE_SCHEMA, "product_id", on_rows)
