"""Merchandising overrides on small feeds: the file's schema, each kind of override, unknown names."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pinlanding_assets.collections.overrides import (
    Merchandising,
    Overrides,
    OverridesError,
    accepted_titles,
    apply_overrides,
    blocked_collections,
    fingerprint,
    override_problems,
    read_overrides,
)

COLLECTIONS = pl.DataFrame({"collection_id": ["dress", "black-dress", "jeans"],
                            "title": ["Dresses", "Black Dresses", "Jeans"], "anchor": ["dress", "dress", "jeans"]})
KNOWN = frozenset(f"p{i}" for i in range(1, 30))


def _feeds(**feeds: list[str]) -> pl.DataFrame:
    rows = [(COLLECTIONS.filter(pl.col("collection_id") == slug.replace("_", "-"))["anchor"][0], slug.replace("_", "-"),
             rank, product, 1.0 - rank / 100) for slug, products in feeds.items() for rank, product in enumerate(products, 1)]
    return pl.DataFrame(rows, schema={"anchor": pl.Utf8, "collection_id": pl.Utf8, "rank": pl.Int32,
                                      "product_id": pl.Utf8, "relevance": pl.Float64}, orient="row")


def _read(tmp_path: Path, text: str) -> Overrides:
    path = tmp_path / "merchandising.toml"
    path.write_text(text)
    return read_overrides(path)


def _feed(applied: pl.DataFrame, slug: str) -> list[tuple[str, str | None]]:
    return applied.filter(pl.col("collection_id") == slug).sort("rank").select("product_id", "override").rows()


def test_each_override_moves_the_feed_and_says_so(tmp_path: Path) -> None:
    overrides = _read(tmp_path, """
exclude = ["p9"]
[collections.dress]
pin = { p7 = 1, p20 = 3 }
boost = ["p5"]
bury = ["p2"]
exclude = ["p3"]
""")
    feeds = _feeds(dress=["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"], jeans=["p9", "p10", "p11"])
    applied = apply_overrides(feeds, Merchandising(overrides, KNOWN, frozenset({"p4", "p10"})), max_feed_size=7)
    assert _feed(applied, "dress") == [("p7", "pin:1"), ("p5", "boost"), ("p20", "pin:3"), ("p1", None), ("p6", None),
                                       ("p2", "bury"), ("p4", "bury:out_of_stock")], "p8 was ranked past the cut of 7"
    assert _feed(applied, "jeans") == [("p11", None), ("p10", "bury:out_of_stock")], "p9 is excluded everywhere"
    assert applied.filter(pl.col("product_id") == "p20")["relevance"].to_list() == [None], "a pinned newcomer has no score"
    kept = apply_overrides(feeds, Merchandising(Overrides(), KNOWN, frozenset({"p4"}), bury_unavailable=False), 100)
    assert kept.select("collection_id", "rank", "product_id").equals(feeds.select("collection_id", "rank", "product_id"))
    assert kept["override"].null_count() == kept.height, "no overrides, nothing moved"


def test_renames_blocks_and_unknown_names_are_reported(tmp_path: Path) -> None:
    overrides = _read(tmp_path, """
exclude = ["nope"]
[collections.dress]
title = "Day Dresses"
pin = { ghost = 2 }
[collections.jeans]
title = "black dresses"
block = true
[collections.gone-page]
bury = ["p1"]
""")
    assert accepted_titles(overrides, COLLECTIONS)[0] == {"dress": "Day Dresses"}
    assert blocked_collections(overrides) == {"jeans"}
    assert override_problems(overrides, COLLECTIONS, KNOWN) == [
        "exclude: unknown product nope", "collections.dress: unknown product ghost",
        "collections.gone-page: no such collection in this release",
        "collections.jeans: title 'black dresses' is already black-dress's; not renamed"]


@pytest.mark.parametrize("text, message", [
    ("[collections.dress]\npin = { p1 = 0 }\n", "ranks start at 1"),
    ("[collections.dress]\npinned = { p1 = 1 }\n", "collections.dress.pinned: Extra inputs are not permitted"),
    ("[collections.dress]\ntitle = \"\"\n", "collections.dress.title"),
    ("exclude = \"p1\"\n", "exclude: Input should be a valid list"),
    ("[collections.dress\n", "is not valid TOML"),
])
def test_a_bad_file_fails_with_where_and_why(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(OverridesError, match=message.replace(".", r"\.").replace("(", r"\(")):
        _read(tmp_path, text)


def test_no_file_means_no_overrides(tmp_path: Path) -> None:
    assert read_overrides(tmp_path / "missing.toml") == Overrides()
    assert fingerprint(tmp_path / "missing.toml") == "absent"
    path = tmp_path / "merchandising.toml"
    path.write_text("exclude = []\n")
    assert len(fingerprint(path)) == 64


def test_an_edit_is_reported_once(tmp_path: Path) -> None:
    import dagster as dg

    from pinlanding_assets.refresh.sensors import overrides_event

    path = tmp_path / "merchandising.toml"
    with dg.DagsterInstance.ephemeral() as instance:
        assert overrides_event(path, instance) is None, "no file, nothing to report"
        path.write_text("exclude = [\"p1\"]\n")
        event = overrides_event(path, instance)
        assert event is not None and event.metadata["fingerprint"].value == fingerprint(path)
        instance.report_runless_asset_event(event)
        assert overrides_event(path, instance) is None, "unchanged since the last report"
        path.write_text("exclude = [\"p2\"]\n")
        assert overrides_event(path, instance) is not None
        path.unlink()
        assert overrides_event(path, instance).metadata["fingerprint"].value == "absent", "a removed file is news"
