"""The encoder domain's logic without torch: training pairs and splits, thresholds, evaluation, the
decode stage's pixels, the attribute table and the ground-truth mapping."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from pinlanding_assets.encoder.assignments import AttributeTable, calibrate_thresholds, unusable_vectors
from pinlanding_assets.encoder.evaluation import evaluate_scores, ground_truth_attributes
from pinlanding_assets.encoder.pairs import split_of, title_matches, vlm_pairs
from pinlanding_assets.encoder.pixels import decode_images, preprocess_image
from pinlanding_assets.encoder.records import EncoderRecord, EncoderSpec
from pinlanding_assets_tests.fast.synthetic import draw_product, vocabulary

CFG = {"size": 224, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "interpolation": "bicubic",
       "resize_mode": "shortest"}
VOCABULARY = vocabulary({"category": ["t-shirt", "jeans", "casual shoes"], "colour": ["black", "navy blue"],
                         "gender": ["men", "women"]}, dropped={"material": ["inkfruit"]})


def test_title_and_label_pairs_use_the_kept_vocabulary() -> None:
    products = pl.DataFrame({"product_id": ["1", "2", "3"],
                             "title": ["Nike Men Black Tshirts", "Levis Women Navy Blue Jeans", "Inkfruit Casual Shoes"]})
    pairs = title_matches(products, VOCABULARY)
    assert pairs.rows() == [("1", "category:t-shirt"), ("1", "colour:black"), ("1", "gender:men"),
                            ("2", "category:jeans"), ("2", "colour:navy-blue"), ("2", "gender:women"),
                            ("3", "category:casual-shoes")]
    raw = pl.DataFrame({"product_id": ["1", "1", "2"], "facet": ["category", "material", "colour"],
                        "value": ["T-Shirts", "inkfruit", "Navy"]})
    assert vlm_pairs(raw, VOCABULARY).rows() == [("1", "category:t-shirt"), ("2", "colour:navy-blue")]


def test_split_is_stable_and_near_its_shares() -> None:
    splits = [split_of(str(i), 0, 0.2, 0.15) for i in range(4000)]
    assert splits == [split_of(str(i), 0, 0.2, 0.15) for i in range(4000)]
    assert abs(splits.count("holdout") / 4000 - 0.2) < 0.03 and abs(splits.count("validation") / 4000 - 0.15) < 0.03
    assert splits != [split_of(str(i), 1, 0.2, 0.15) for i in range(4000)], "the seed moves products"


def test_thresholds_separate_positives_from_negatives() -> None:
    rng = np.random.default_rng(0)
    positives = np.zeros((60, 2))
    positives[:20, 0] = 1
    positives[:2, 1] = 1  # too few pairs: the attribute gets the global cut
    scores = rng.uniform(0.0, 0.3, (60, 2)) + positives * 0.5
    thresholds = calibrate_thresholds(scores, positives, ["a", "b"])
    # the cut is the lowest positive's score, rounded to 5 decimals
    assert abs(thresholds["a"] - scores[:20, 0].min()) <= 5e-6 and thresholds["a"] > scores[20:, 0].max()
    global_cut = calibrate_thresholds(scores.reshape(-1, 1), positives.reshape(-1, 1), ["all"])["all"]
    assert thresholds["b"] == global_cut


def test_evaluation_counts_recall_and_per_facet_precision() -> None:
    ids, facets = ["category:a", "category:b", "colour:x", "colour:y"], ["category", "category", "colour", "colour"]
    scores = np.array([[0.9, 0.1, 0.6, 0.7], [0.2, 0.8, 0.1, 0.3]])
    truth = pl.DataFrame({"product_id": ["p", "p", "q"], "facet": ["category", "colour", "category"],
                          "attribute_id": ["category:a", "colour:x", "category:a"]})
    result = evaluate_scores(scores, ["p", "q"], ids, facets, truth, k=2, thresholds={"colour:x": 0.5, "colour:y": 0.5})
    assert result["recall_at_10"] == 0.25 and result["products"] == 2  # p: a of {a, x} in its top 2; q: not a
    assert result["per_facet"]["category"] == {"precision": 0.5, "recall": 0.5, "products": 2}
    assert result["per_facet"]["colour"] == {"precision": 0.5, "recall": 1.0, "products": 1}, "x and y pass 0.5"


def test_decode_stage_pixels(tmp_path: Path) -> None:
    image = draw_product(tmp_path / "p.jpg", "Red", size=(300, 400))
    pixels = preprocess_image(Image.open(image), CFG)
    assert pixels.shape == (3, 224, 224) and pixels.dtype == np.float32
    assert pixels[0].mean() > pixels[2].mean(), "a red garment stays red after normalisation"
    batch, usable = decode_images([str(image), str(tmp_path / "missing.jpg"), str(image)], [False, False, True], CFG)
    assert usable.tolist() == [True, False, False] and not batch[1].any() and not batch[2].any()
    assert np.array_equal(batch[0], pixels)


def test_attribute_table_orders_facets_and_finds_unusable_vectors() -> None:
    vectors = np.eye(4, dtype=np.float32)
    table = AttributeTable.build(["colour:x", "category:b", "category:a", "colour:y"],
                                 ["colour", "category", "category", "colour"], vectors,
                                 {"colour:x": 0.3, "colour:y": 0.4, "category:a": 0.5, "category:b": 0.5})
    assert table.ids.tolist() == ["category:a", "category:b", "colour:x", "colour:y"]
    assert table.slices == (("category", 0, 2), ("colour", 2, 4))
    assert np.array_equal(table.vectors[0], vectors[2]) and np.allclose(table.cuts, [0.5, 0.5, 0.3, 0.4])
    products = np.array([[1, 0, 0, 0], [np.nan, 0, 0, 0], [0, 0, 0, 0]], np.float32)
    reasons = unusable_vectors(products)
    assert reasons[0] is None and "finite" in reasons[1] and "zero" in reasons[2]


def test_ground_truth_maps_exactly_before_by_similarity() -> None:
    ground_truth = pl.DataFrame({"product_id": ["1", "2", "3"], "articleType": ["Tshirts", "Jeans", "Kurtas"],
                           "baseColour": ["Black", "Navy Blue", ""], "gender": ["Men", "Women", "Men"]})

    def unrelated(texts: list[str]) -> np.ndarray:
        """Random unit vectors per text (cosine ~0.06 between different texts): only exact matches map."""
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=256) for t in texts]
        return np.asarray([r / np.linalg.norm(r) for r in rows], np.float32)

    truth = ground_truth_attributes(ground_truth, VOCABULARY, unrelated)
    assert sorted(truth.rows()) == [("1", "category", "category:t-shirt"), ("1", "colour", "colour:black"),
                                    ("1", "gender", "gender:men"), ("2", "category", "category:jeans"),
                                    ("2", "colour", "colour:navy-blue"), ("2", "gender", "gender:women"),
                                    ("3", "gender", "gender:men")]


def test_the_encoder_record_round_trips_its_table() -> None:
    """The dual_encoder row is written and read by the record alone: reading a table back and writing it
    again gives the same bytes, the spec gains its checkpoint, the JSON columns come back typed."""
    record = EncoderRecord(release="r001", version="abc", checkpoint="/m/abc.pt",
                           spec=EncoderSpec(image_weight=0.4, checkpoint="/m/abc.pt"),
                           preprocess_cfg={"size": 224}, thresholds={"colour:red": 0.31, "category:dress": 0.2},
                           metrics={"fused": {"recall_at_10": 0.9}}, training={"epochs_run": 3})
    table = record.to_table()
    assert table.columns == ["release", "version", "checkpoint", "spec", "preprocess_cfg", "thresholds", "metrics",
                             "training"]
    assert '"checkpoint": null' in table["spec"][0], "the spec column holds the spec as trained"
    back = EncoderRecord.from_table(table)
    assert back == record and back.spec.checkpoint == "/m/abc.pt" and back.recall_at_10("fused") == 0.9
    assert back.to_table().equals(table)
    old = table.with_columns(pl.lit('{"model_name": "pinlanding-effnetlite0-minilm"}').alias("spec"))
    assert EncoderRecord.from_table(old).spec.colour_descriptor is False, "a spec from before the colour descriptor"
