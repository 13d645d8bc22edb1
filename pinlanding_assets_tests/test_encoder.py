"""The dual encoder for real: built through open_clip from the offline weights, trained on real
products, checkpointed, embedded on Ray, assigned and evaluated against held-out ground truth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from pinlanding_assets.catalog.products import validate_catalog
from pinlanding_assets.encoder.assignments import assign, calibrate_thresholds
from pinlanding_assets.encoder.embeddings import embed_products_with_ray, phrase_rejection
from pinlanding_assets.encoder.evaluation import encode_products, evaluate_encoders
from pinlanding_assets.encoder.model import DualEncoder, load_checkpoint, save_checkpoint
from pinlanding_assets.encoder.pairs import split_of, title_matches
from pinlanding_assets.encoder.records import EncoderSpec
from pinlanding_assets.encoder.training import TrainingConfig, build_feature_cache, train_heads
from resources.models import load_efficientnet_lite, load_minilm

PHRASES = {
    "category": ["t-shirt", "shirt", "jeans", "casual shoes", "sports shoes", "handbag", "watch", "kurta", "heels",
                 "flip flops", "top", "sandal", "belt", "sunglasses", "backpack", "trousers", "socks", "wallet"],
    "colour": ["black", "white", "blue", "navy blue", "red", "green", "grey", "brown", "pink", "yellow", "purple"],
    "gender": ["men", "women", "unisex"],
}


def _vocabulary() -> pl.DataFrame:
    rows = [{"attribute_id": f"{facet}:{phrase.replace(' ', '-')}", "facet": facet, "phrase": phrase, "aliases": [],
             "decision": "keep"} for facet, phrases in PHRASES.items() for phrase in phrases]
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def catalog(fashion_dir: Path):
    return validate_catalog("full", fashion_dir)


@pytest.fixture(scope="module")
def trained(catalog, tmp_path_factory):
    """Heads trained on title-matched pairs of 500 real products (the holdout split is never used)."""
    cache_dir = tmp_path_factory.mktemp("open_clip")
    encoder = DualEncoder(EncoderSpec(), cache_dir)
    vocabulary = _vocabulary()
    pairs = title_matches(catalog.products, vocabulary)
    config = TrainingConfig(max_products=500, epochs=30, patience=6)
    cache = build_feature_cache(encoder, catalog.products, pairs, vocabulary, config)
    report = train_heads(encoder, cache, config)
    return encoder, cache, report, vocabulary, config, cache_dir


def test_towers_carry_the_offline_weights(tmp_path: Path, fashion_dir: Path) -> None:
    encoder = DualEncoder(EncoderSpec(), tmp_path)
    minilm = load_minilm()
    ours = encoder.text_trunk_features(["black leather ankle boots"])[0].numpy()
    reference = minilm.encode(["black leather ankle boots"], normalize_embeddings=False)[0]
    assert np.dot(ours, reference) / (np.linalg.norm(ours) * np.linalg.norm(reference)) > 0.999
    from PIL import Image

    pixels = encoder.preprocess(Image.open(fashion_dir / "images" / "1855.jpg").convert("RGB"))
    with torch.no_grad():
        expected = load_efficientnet_lite().forward_head(
            load_efficientnet_lite().forward_features(pixels.unsqueeze(0)), pre_logits=True)
    assert torch.allclose(encoder.image_trunk_features(pixels.unsqueeze(0)), expected, atol=1e-4)


def test_training_learns_and_generalises(trained, catalog) -> None:
    encoder, cache, report, vocabulary, config, _ = trained
    assert "holdout" not in cache.splits
    assert report.best_validation_recall_at_10 > report.validation_recall_at_10[0] - 1e-6
    assert report.best_validation_recall_at_10 >= 0.9
    holdout = catalog.products.filter(pl.col("product_id").map_elements(
        lambda pid: split_of(pid, config.seed, config.holdout_share, config.validation_share) == "holdout",
        return_dtype=pl.Boolean)).sort("product_id").head(200)
    metrics = evaluate_encoders(encoder, holdout, catalog.ground_truth, vocabulary)
    assert metrics["fused"]["products"] > 150
    assert metrics["fused"]["recall_at_10"] > metrics["text_only"]["recall_at_10"]
    assert metrics["fused"]["recall_at_10"] >= 0.9 and metrics["image_only"]["recall_at_10"] >= 0.75
    assert set(metrics["fused"]["per_facet"]) == {"category", "colour", "gender"}


def test_training_is_deterministic(trained, catalog) -> None:
    encoder, cache, report, vocabulary, config, cache_dir = trained
    again = DualEncoder(EncoderSpec(), cache_dir)
    assert train_heads(again, cache, config).validation_recall_at_10 == report.validation_recall_at_10
    for (name, a), b in zip(encoder.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_unfrozen_image_blocks_train_and_stay_consistent(catalog, tmp_path: Path) -> None:
    """Training the last trunk stage changes it, and the saved model embeds exactly as trained."""
    from pinlanding_assets.encoder.training import load_pixels

    encoder = DualEncoder(EncoderSpec(), tmp_path)
    pixels, _ = load_pixels(catalog.products["image_path"].head(4).to_list(), encoder.preprocess)
    stem = encoder.image_stem_features(pixels, 1)
    assert stem.ndim == 4
    assert torch.allclose(encoder.image_tail(stem, 1), encoder.image_trunk_features(pixels), atol=1e-5)
    before = [p.detach().clone() for p in encoder.open_image_parameters(1)]
    vocabulary = _vocabulary()
    config = TrainingConfig(max_products=160, epochs=3, patience=3, unfreeze_image_blocks=1)
    cache = build_feature_cache(encoder, catalog.products, title_matches(catalog.products, vocabulary), vocabulary, config)
    assert cache.image.ndim == 4 and cache.open_blocks == 1
    train_heads(encoder, cache, config)
    after = encoder.open_image_parameters(1)
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "the open stage trained"
    with torch.no_grad():
        stem = encoder.image_stem_features(pixels, 1)
        trained_path = encoder.image_head(torch.cat([encoder.image_tail(stem, 1), encoder.colour_features(pixels)], -1))
        assert torch.allclose(trained_path, encoder.image_head(encoder.image_features(pixels)), atol=1e-5)
    save_checkpoint(encoder.model, EncoderSpec(), tmp_path / "open.pt", {})
    reloaded = DualEncoder(EncoderSpec(checkpoint=str(tmp_path / "open.pt")), tmp_path)
    assert torch.allclose(reloaded.image_trunk_features(pixels), encoder.image_trunk_features(pixels), atol=1e-6)


def test_checkpoint_round_trip_and_mismatch(trained, tmp_path: Path) -> None:
    encoder, _, _, _, _, cache_dir = trained
    spec = EncoderSpec()
    version = save_checkpoint(encoder.model, spec, tmp_path / "ck.pt", {})
    reloaded = DualEncoder(EncoderSpec(checkpoint=str(tmp_path / "ck.pt")), cache_dir)
    phrases = ["black", "kurta"]
    assert np.allclose(reloaded.encode_phrases(phrases), encoder.encode_phrases(phrases), atol=1e-6)
    assert len(version) == 16
    with pytest.raises(ValueError, match="was trained for"):
        load_checkpoint(encoder.model, tmp_path / "ck.pt", EncoderSpec(model_name="ViT-B-32"))
    payload = torch.load(tmp_path / "ck.pt", weights_only=False)
    payload["state_dict"].pop(next(iter(payload["state_dict"])))
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="does not match model"):
        load_checkpoint(encoder.model, tmp_path / "broken.pt", spec)


def test_ray_embeddings_match_in_process(trained, catalog, tmp_path: Path) -> None:
    import open_clip
    import ray

    encoder, _, _, _, _, cache_dir = trained
    version = save_checkpoint(encoder.model, EncoderSpec(), tmp_path / "ck.pt", {})
    products = catalog.products.sort("product_id").head(40).with_columns(
        (pl.col("product_id") == catalog.products.sort("product_id")["product_id"][0]).alias("is_blank"))
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        from ray.data import ActorPoolStrategy

        staged = embed_products_with_ray(
            products.select("product_id", "title", "image_path", "is_blank").to_arrow().take(list(range(39, -1, -1))),
            EncoderSpec(checkpoint=str(tmp_path / "ck.pt")), cache_dir, version, "r001",
            open_clip.get_model_preprocess_cfg(encoder.model),
            {"num_cpus": 0.5, "compute": ActorPoolStrategy(size=1)}, tmp_path / "staging", batch_size=8)
    finally:
        ray.shutdown()
    assert len(list(staged.path.glob("*.parquet"))) >= 1 and staged.rows() == 40
    table = pl.read_parquet(staged.path).sort("product_id")
    assert table["product_id"].to_list() == products["product_id"].to_list(), "every product once"
    assert set(table["release"]) == {"r001"}
    assert table["image_used"].to_list() == [False] + [True] * 39, "a blank image falls back to the title"
    assert set(table["model_version"]) == {version}
    expected = encode_products(encoder, products)["fused"]
    assert np.allclose(np.asarray(table["embedding"].to_list()), expected, atol=1e-4)


def test_phrases_that_tokenise_to_nothing_are_rejected(trained) -> None:
    tokenizer = trained[0].tokenizer
    assert phrase_rejection(tokenizer, "   ") == "empty phrase"
    assert phrase_rejection(tokenizer, "\u2063\u2063") is not None
    assert phrase_rejection(tokenizer, "navy blue") is None


def test_thresholds_and_assignment() -> None:
    scores = np.array([[0.9, 0.2, 0.7, 0.1], [0.3, 0.8, 0.2, 0.6], [0.85, 0.1, 0.65, 0.2], [0.2, 0.7, 0.1, 0.75]])
    positives = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]])
    ids = ["category:a", "category:b", "colour:x", "colour:y"]
    thresholds = calibrate_thresholds(scores, positives, ids)
    assert 0.2 < thresholds["colour:x"] <= 0.65 and 0.2 < thresholds["category:a"] <= 0.85
    table = assign("d", ["p1", "p2"], scores[:2], ids, ["category", "category", "colour", "colour"], thresholds)
    assert table.filter(pl.col("facet") == "category")["attribute_id"].to_list() == ["category:a", "category:b"]
    assert table.filter(pl.col("product_id") == "p1")["attribute_id"].to_list() == ["category:a", "colour:x"]


def test_title_only_products_are_judged_on_the_facets_their_title_names() -> None:
    from pinlanding_assets.encoder.training import _multi_positive_loss, known_attributes

    positives = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0]])
    facets = ["category", "category", "occasion", "colour"]
    known = known_attributes(positives, facets, fully_labelled=torch.tensor([False, True]))
    assert known.tolist() == [[True, True, False, False], [True, True, True, True]]
    logits = torch.tensor([[2.0, 1.0, 5.0, 5.0], [0.0, 0.0, 1.0, 0.0]])
    masked = _multi_positive_loss(logits, positives, known)
    # the first product's loss ignores the occasion and colour it is not judged on
    expected = (-torch.log_softmax(torch.tensor([2.0, 1.0]), 0)[0] - torch.log_softmax(logits[1], 0)[2]) / 2
    assert torch.isclose(masked, expected)
    assert _multi_positive_loss(logits, positives) > masked, "unmasked, the unknown facets count as negatives"


def test_torch_free_decoding_gives_open_clips_pixels(trained, catalog) -> None:
    """The Ray decode tasks skip importing torch/open_clip; their pixels must be open_clip's exactly."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    from pinlanding_assets.encoder.pixels import preprocess_image

    cfg = open_clip.get_model_preprocess_cfg(trained[0].model)
    transform = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    for path in catalog.products.sort("product_id")["image_path"].head(30):
        with Image.open(path) as image:
            assert np.array_equal(preprocess_image(image, cfg), transform(image.convert("RGB")).numpy())
    wide = Image.new("RGB", (500, 120), (200, 10, 10))
    assert np.array_equal(preprocess_image(wide, cfg), transform(wide).numpy()), "a wide image is cropped alike"


def test_encoder_actors_starting_together_never_read_a_half_written_config(tmp_path: Path) -> None:
    """Two encoder actors register the architecture at the same moment (a real run once failed a drop
    on an empty config file): two processes that keep rewriting it (each with another text tower path,
    so every call writes) never read a partial file."""
    script = ("import sys\nfrom pathlib import Path\n"
              "from pinlanding_assets.encoder.model import register_architecture\n"
              "for _ in range(300):\n"
              "    register_architecture(Path(sys.argv[1]), Path(sys.argv[2]))\n")
    processes = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), f"/towers/{i}"], stderr=subprocess.PIPE,
                                  text=True) for i in range(2)]
    errors = [process.communicate(timeout=600)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], errors


def test_training_never_reads_the_ground_truth(fashion_dir: Path, fashion_rows, tmp_path: Path) -> None:
    """The same drop with its label columns shuffled across rows yields the same products and, through
    the training the release runs, the same encoder and thresholds: the labels reach evaluation only."""
    import csv
    import random

    from pinlanding_assets.catalog.products import FASHION_GROUND_TRUTH
    from pinlanding_assets.encoder.model import state_digest
    from pinlanding_assets.encoder.training import train_dual_encoder

    rows = fashion_rows[:160]
    shuffled = [dict(row) for row in rows]
    generator = random.Random(7)
    for column in FASHION_GROUND_TRUTH:
        values = [row[column] for row in rows]
        generator.shuffle(values)
        for row, value in zip(shuffled, values):
            row[column] = value
    trained = {}
    for name, table in (("as sent", rows), ("labels shuffled", shuffled)):
        drop = tmp_path / name / "drop-001"
        (drop / "images").mkdir(parents=True)
        with (drop / "catalog.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(table)
        for row in table:
            (drop / "images" / f"{row['id']}.jpg").symlink_to(fashion_dir / "images" / f"{row['id']}.jpg")
        tables = validate_catalog("drop-001", drop)
        answers = pl.DataFrame({"product_id": tables.products["product_id"].head(12).to_list(),
                                "facet": ["gender"] * 12, "value": ["men"] * 12})
        model = train_dual_encoder(tables.products, answers, _vocabulary(), EncoderSpec(),
                                   TrainingConfig(max_products=160, epochs=3, patience=3), tmp_path / "open_clip")
        trained[name] = (tables, state_digest(model.encoder.model), model.thresholds)
    (plain, plain_digest, plain_thresholds), (mixed, mixed_digest, mixed_thresholds) = trained.values()
    assert not plain.ground_truth.equals(mixed.ground_truth), "the shuffle changed the ground truth"
    assert plain.products.drop("image_path").equals(mixed.products.drop("image_path"))
    assert plain_digest == mixed_digest and plain_thresholds == mixed_thresholds
