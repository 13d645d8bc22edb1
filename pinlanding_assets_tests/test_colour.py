"""The image side's colour descriptor on synthetic product shots of known colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pinlanding_assets.encoder.colour import COLOUR_BINS, REGION_BINS, bin_name, colour_descriptor


def shot(colour: tuple[int, int, int], backdrop: tuple[int, int, int] = (245, 245, 245), side: int = 224,
         share: float = 0.5) -> torch.Tensor:
    """A product (a centred rectangle of one colour) on a plain backdrop, as (3, H, W) sRGB in [0, 1]."""
    image = np.full((side, side, 3), backdrop, np.uint8)
    margin = int(side * (1 - share**0.5) / 2)
    image[margin:side - margin, margin:side - margin] = colour
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255


def whole(descriptor: torch.Tensor) -> torch.Tensor:
    """The whole foreground's histogram (square roots of shares) out of the descriptor."""
    return descriptor[:REGION_BINS] * 2**0.5


def dominant(descriptor: torch.Tensor) -> str:
    return bin_name(int(whole(descriptor).argmax()))


@pytest.mark.parametrize(("colour", "expected"), [
    ((20, 20, 22), "black"), ((128, 128, 130), "grey"), ((24, 26, 40), "black cool"), ((40, 34, 28), "black warm"),
    ((200, 32, 44), "hue 30-60 mid vivid"),
    ((46, 96, 190), "hue 270-300 mid vivid"), ((28, 36, 78), "hue 270-300 dark muted"),
    ((44, 140, 70), "hue 120-150 mid vivid"), ((236, 136, 172), "hue 330-360 light vivid"),
    ((222, 204, 170), "hue 60-90 light muted"),
])
def test_the_product_colour_fills_its_bin(colour, expected) -> None:
    descriptor = colour_descriptor(shot(colour).unsqueeze(0))[0]
    assert descriptor.shape == (COLOUR_BINS,)
    assert dominant(descriptor) == expected
    assert whole(descriptor).max() > 0.99, "the backdrop is masked: the product's colour is all there is"
    assert torch.equal(descriptor[:REGION_BINS], descriptor[REGION_BINS:]), "the centre holds the same product"
    assert torch.isclose(descriptor.norm(), torch.tensor(1.0))


def test_colours_a_title_would_confuse_stay_apart() -> None:
    """Navy and blue, maroon and red, beige and orange: different bins, so a linear map can tell them apart."""
    pairs = [((28, 36, 78), (46, 96, 190)), ((112, 26, 40), (200, 32, 44)), ((222, 204, 170), (240, 128, 36))]
    for a, b in pairs:
        descriptors = colour_descriptor(torch.stack([shot(a), shot(b)]))
        assert float(descriptors[0] @ descriptors[1]) < 0.1, (a, b)


def test_a_white_product_on_a_grey_backdrop_is_white_and_a_full_bleed_photo_counts_every_pixel() -> None:
    white_on_grey = colour_descriptor(shot((250, 250, 250), backdrop=(150, 150, 150)).unsqueeze(0))[0]
    assert dominant(white_on_grey) == "white"
    full_bleed = colour_descriptor(shot((200, 32, 44), backdrop=(200, 32, 44)).unsqueeze(0))[0]
    assert dominant(full_bleed) == "hue 30-60 mid vivid" and whole(full_bleed).max() > 0.99
    two_tone = colour_descriptor(shot((20, 20, 22), share=0.3).unsqueeze(0))[0]
    assert dominant(two_tone) == "black"
    white = [i for i in range(REGION_BINS) if bin_name(i).startswith("white")]
    assert float((whole(two_tone)[white] ** 2).sum()) < 0.01, "the light backdrop is not counted (edges blend into grey)"


def test_the_centre_holds_the_worn_product() -> None:
    """A blue top worn by a model: skin and dark trousers fill the frame, the centre is the top."""
    image = np.full((224, 224, 3), 245, np.uint8)
    image[20:204, 40:184] = (196, 150, 120)  # skin and the rest of the outfit around the product
    image[150:204, 40:184] = (30, 30, 34)
    image[70:150, 60:164] = (46, 96, 190)
    descriptor = colour_descriptor((torch.from_numpy(image).permute(2, 0, 1).float() / 255).unsqueeze(0))[0]
    centre = descriptor[REGION_BINS:] * 2**0.5
    blue = [i for i in range(REGION_BINS) if bin_name(i).startswith("hue 270-300")]
    assert float((centre[blue] ** 2).sum()) > float((whole(descriptor)[blue] ** 2).sum()) + 0.2


def test_unusable_images_have_no_colour() -> None:
    descriptors = colour_descriptor(torch.stack([shot((200, 32, 44)), shot((46, 96, 190))]),
                                    usable=torch.tensor([True, False]))
    assert torch.isclose(descriptors[0].norm(), torch.tensor(1.0)) and descriptors[1].abs().sum() == 0


def test_the_encoder_reads_colour_from_its_own_normalised_pixels(tmp_path: Path) -> None:
    """The descriptor the model sees (from preprocessed, normalised pixels) is that of the picture."""
    from pinlanding_assets.encoder.model import DualEncoder
    from pinlanding_assets.encoder.records import EncoderSpec

    encoder = DualEncoder(EncoderSpec(), tmp_path)
    picture = shot((28, 36, 78), side=300)
    path = tmp_path / "navy.png"
    Image.fromarray((picture.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    with Image.open(path) as image:
        pixels = encoder.preprocess(image.convert("RGB")).unsqueeze(0)
    seen = encoder.colour_features(pixels)[0]
    assert dominant(seen) == "hue 270-300 dark muted"
    assert encoder.image_features(pixels).shape[-1] == 1280 + COLOUR_BINS
    plain = DualEncoder(EncoderSpec(colour_descriptor=False), tmp_path)
    assert plain.image_features(pixels).shape[-1] == 1280
