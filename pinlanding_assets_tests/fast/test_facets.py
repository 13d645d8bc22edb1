"""The facet core: normalisation, plurals, kept vocabulary and its lookup, query and title text."""

from __future__ import annotations

import polars as pl
import pytest

from pinlanding_assets.facets import (
    DISPLAY_ORDER,
    EXCLUSIVE_FACETS,
    FACET_HEADINGS,
    FACETS,
    GROUND_TRUTH,
    NAME_ORDER,
    kept_vocabulary,
    normalise_query,
    normalise_value,
    plural,
    singular,
    title_tokens,
    vocabulary_lookup,
)
from pinlanding_assets_tests.fast.synthetic import vocabulary


@pytest.mark.parametrize(("facet", "value", "expected"), [
    ("category", "T-Shirts", "t-shirt"), ("category", "Tshirt", "t-shirt"), ("category", "  Kurtas ", "kurta"),
    ("category", "Jeans", "jeans"), ("category", "Flip Flops", "flip flops"), ("category", "dresses", "dress"),
    ("colour", "Gray", "grey"), ("colour", "navy", "navy blue"), ("gender", "Men's", "men"),
    ("pattern", "Stripes", "striped"), ("category", "casual shoe", "casual shoes"), ("category", "Scarves", "scarf"),
])
def test_normalise(facet: str, value: str, expected: str) -> None:
    assert normalise_value(facet, value) == expected


def test_normalise_query() -> None:
    assert normalise_query("  Women's  BLACK-dresses!! ") == "womens black-dresses"
    assert normalise_query("ＢＬＡＣＫ   Jeans") == "black jeans"
    assert normalise_query("<script>") == "script"


def test_plurals_and_singulars() -> None:
    assert [plural(n) for n in ("t-shirt", "dress", "watch", "jeans", "hoody", "casual shoes", "innerwear")] == [
        "t-shirts", "dresses", "watches", "jeans", "hoodies", "casual shoes", "innerwear"]
    assert [singular(w) for w in ("dresses", "kurtas", "hoodies", "glass", "bus")] == [
        "dress", "kurta", "hoody", "glass", "bus"]


def test_kept_vocabulary_keeps_its_order_and_looks_up_aliases() -> None:
    table = vocabulary({"category": ["t-shirt", "jeans"], "colour": ["grey"]}, dropped={"material": ["inkfruit"]})
    table = table.with_columns(pl.when(pl.col("phrase") == "t-shirt").then(pl.lit(["tee shirts"]))
                               .otherwise(pl.col("aliases")).alias("aliases"))
    assert kept_vocabulary(table)["phrase"].to_list() == ["t-shirt", "jeans", "grey"]
    lookup = vocabulary_lookup(table)
    assert lookup[("category", "t-shirt")] == lookup[("category", normalise_value("category", "Tee Shirts"))]
    assert lookup[("colour", "grey")] == "colour:grey" and ("material", "inkfruit") not in lookup


def test_orders_cover_every_facet() -> None:
    for order in (NAME_ORDER, DISPLAY_ORDER):
        assert sorted(order) == sorted(FACETS)
    assert set(FACET_HEADINGS) == set(FACETS) and EXCLUSIVE_FACETS <= set(FACETS) and set(GROUND_TRUTH) <= set(FACETS)
    assert NAME_ORDER[-1] == "category", "a name ends with what the product is"


def test_title_tokens_are_whole_words_in_vocabulary_form() -> None:
    assert title_tokens("Roadster Men Grey Tshirts") == " roadster men grey t-shirt "
    assert " jeans " in title_tokens("Levis Women Blue Jeans")
