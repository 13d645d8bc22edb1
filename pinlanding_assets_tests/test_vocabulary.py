"""Vocabulary curation on real embeddings and a real LLM judge."""

from __future__ import annotations

import polars as pl
import pytest

from pinlanding_assets.attributes.brands import find_brands
from pinlanding_assets.attributes.product_types import modifier_words, title_product_types
from pinlanding_assets.attributes.vocabulary import (
    CurationConfig,
    curate,
)
from pinlanding_assets.settings import get_paths
from resources.llm import LocalLLM
from resources.models import DEFAULT_LLM, gguf_path, load_minilm


def _raw(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    records = []
    for facet, value, products in rows:
        records += [{"product_id": f"{facet}-{value}-{i}", "facet": facet, "value": value} for i in range(products)]
    return pl.DataFrame(records)


@pytest.fixture(scope="module")
def encode():
    model = load_minilm()
    return lambda phrases: model.encode(list(phrases), normalize_embeddings=True)


@pytest.fixture(scope="module")
def judge() -> LocalLLM:
    return LocalLLM(gguf_path(DEFAULT_LLM, get_paths().model_cache_dir), threads=2)


def test_curation_merges_filters_and_judges(encode, judge: LocalLLM) -> None:
    raw = _raw([
        ("category", "t-shirt", 9), ("category", "T Shirts", 4), ("category", "Tshirts", 2), ("category", "jeans", 6),
        ("category", "sports shoes", 5), ("category", "sport shoes", 3), ("category", "handbag", 4),
        ("colour", "black", 8), ("colour", "navy blue", 5), ("colour", "blue", 5), ("colour", "mauve", 1),
        ("material", "inkfruit", 4), ("material", "cotton", 6), ("material", "black", 3), ("style", "catwalk", 4),
    ])
    titles = ["Catwalk Women Black Flats", "Catwalk Women Red Heels", "Catwalk Women Brown Sandals",
              "Red Tape Men Black Shoes", "Red Tape Men Brown Shoes", "Red Tape Men Casual Shoes",
              "Nike Men Red T-shirt", "Puma Women Red Top", "Adidas Men Red Shorts", "Nike Women Red Shorts"]
    result = curate(raw, encode, judge.yes_probabilities, CurationConfig(min_support=3), brands=find_brands(titles))
    vocab = result.vocabulary
    assert vocab["attribute_id"].is_unique().all()
    assert vocab["reason"].is_not_null().all() and set(vocab["decision"]) <= {"keep", "drop"}
    tshirt = vocab.filter(pl.col("attribute_id") == "category:t-shirt").row(0, named=True)
    assert tshirt["support"] == 15 and tshirt["merged"] == 1, "t-shirt spellings normalise into one phrase"
    shoes = vocab.filter(pl.col("attribute_id") == "category:sports-shoes").row(0, named=True)
    assert shoes["aliases"] == ["sport shoes"] and shoes["support"] == 8
    assert {"colour:navy-blue", "colour:blue"} <= set(vocab["attribute_id"]), "distinct colours stay apart"
    mauve = vocab.filter(pl.col("attribute_id") == "colour:mauve").row(0, named=True)
    assert mauve["decision"] == "drop" and mauve["reason"].startswith("frequency")
    decisions = dict(zip(vocab["attribute_id"], vocab["decision"]))
    assert decisions["colour:black"] == "keep" and decisions["category:jeans"] == "keep"
    assert decisions["material:inkfruit"] == "drop", vocab.filter(pl.col("facet") == "material")
    catwalk = vocab.filter(pl.col("attribute_id") == "style:catwalk").row(0, named=True)
    assert catwalk["decision"] == "drop" and catwalk["reason"].startswith("brand:")
    assert result.steps["after_brand_filter"] == result.steps["after_frequency_filter"] - 1
    assert result.steps["normalised"] > result.steps["after_brand_filter"] > result.steps["after_clustering"]
    misplaced = vocab.filter(pl.col("attribute_id") == "material:black").row(0, named=True)
    assert misplaced["decision"] == "drop" and "better supported as colour (8 products)" in misplaced["reason"]
    assert result.steps["after_one_facet_per_phrase"] == result.steps["after_clustering"] - 1


def test_curation_is_deterministic(encode, judge: LocalLLM) -> None:
    raw = _raw([("colour", "black", 4), ("colour", "white", 3), ("category", "watch", 5), ("category", "watches", 2)])
    first = curate(raw, encode, judge.yes_probabilities).vocabulary
    assert first.equals(curate(raw.reverse(), encode, judge.yes_probabilities).vocabulary)


def test_product_types_named_in_titles_join_the_vocabulary(encode, judge: LocalLLM) -> None:
    raw = _raw([("category", "shoes", 4), ("category", "jeans", 3), ("colour", "black", 4), ("colour", "blue", 3)])
    titles = pl.DataFrame([{"product_id": f"{kind}-{i}", "title": title} for kind, title, n in [
        ("sports", "Puma Men Black Sports Shoes", 6), ("casual", "Red Tape Men Brown Casual Shoes", 5),
        ("trousers", "Mother Earth Women Grey Trousers", 5), ("jeans", "Locomotive Men Blue Jeans", 4),
    ] for i in range(n)])
    types = title_product_types(titles, modifier_words(raw, find_brands(titles["title"])), min_products=4)
    vocab = curate(raw, encode, judge.yes_probabilities, CurationConfig(min_support=3), product_types=types).vocabulary
    decisions = dict(zip(vocab["attribute_id"], vocab["decision"]))
    assert {"category:sports-shoes", "category:casual-shoes", "category:trousers", "category:jeans"} <= set(decisions)
    assert decisions["category:trousers"] == "keep", "trousers have their own type: never jeans"
    shoes = vocab.filter(pl.col("attribute_id") == "category:shoes").row(0, named=True)
    assert shoes["decision"] == "drop" and shoes["reason"].startswith("product type: 11 of the 11 titles")
    jeans = vocab.filter(pl.col("attribute_id") == "category:jeans").row(0, named=True)
    assert jeans["support"] == 7, "the attribute stage's 3 products and the 4 titles"
