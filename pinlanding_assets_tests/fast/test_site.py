"""The landing-page site built from small synthetic inputs: escaping, complete files, safe slugs."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import polars as pl
import pytest

from pinlanding_assets.site.pages import SiteError, page_path, safe_path
from pinlanding_assets_tests.fast.synthetic import (
    XSS,
    build_shop_site,
    draw_product,
    fashion_rows,
    three_collection_site,
)


@pytest.mark.parametrize("slug", ["../escape", "a/b", "", "UPPER", "x.html", "-lead"])
def test_unsafe_slugs_are_refused(slug: str, tmp_path: Path) -> None:
    with pytest.raises(SiteError):
        page_path(slug)
    with pytest.raises(SiteError):
        safe_path(tmp_path, "../outside.html")


@pytest.fixture(scope="module")
def site_inputs(tmp_path_factory) -> tuple[pl.DataFrame, ...]:
    """Drawn products in three collections; one product is named like an XSS attack."""
    images = tmp_path_factory.mktemp("images")
    rows = fashion_rows(24)
    paths = [str(draw_product(images / f"{r['id']}.jpg", r["baseColour"])) for r in rows]
    return three_collection_site(rows, paths, men=5)


@pytest.fixture(scope="module")
def site(site_inputs, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site") / "site"
    summary = build_shop_site(site_inputs, target)
    assert summary.collection_pages == 3 and summary.pages == 4 and summary.thumbnails == 24
    return target


def test_text_is_escaped_and_files_are_complete(site: Path) -> None:
    page = (site / "c" / "t-shirt.html").read_text()
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    index = (site / "index.html").read_text()
    assert "Men&#39;s T-Shirts &amp; &lt;b&gt;More&lt;/b&gt;" in index
    assert index.index('id="category"') < index.index('id="gender"'), "facet sections in display order"
    jeans = (site / "c" / "jeans.html").read_text()
    assert "Also searched as: Women&#39;s Jeans &lt;i&gt;" in jeans, "a page names the refinements it stands for"
    assert "Also searched as" not in page
    urls = [url[0].text for url in ElementTree.parse(site / "sitemap.xml").getroot()]
    assert urls == ["https://shop.example/index.html", "https://shop.example/c/jeans.html",
                    "https://shop.example/c/men-t-shirt.html", "https://shop.example/c/t-shirt.html"]
    assert (site / "robots.txt").read_text() == "User-agent: *\nAllow: /\nSitemap: https://shop.example/sitemap.xml\n"
    assert len(list((site / "thumbs").glob("*.jpg"))) == 24
    assert not list(site.parent.glob("*.staging"))


def test_rebuilding_gives_the_same_site(site: Path, site_inputs, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_shop_site(site_inputs, again)
    files = sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((site / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_a_release_with_nothing_to_publish_leaves_the_site_in_service(site: Path, site_inputs, tmp_path: Path) -> None:
    live = tmp_path / "live"
    build_shop_site(site_inputs, live)
    before = sorted(p.relative_to(live) for p in live.rglob("*") if p.is_file())
    collections, feeds, products = site_inputs
    with pytest.raises(SiteError, match="no published collection to show"):
        build_shop_site((collections, feeds.clear(), products), live)
    assert sorted(p.relative_to(live) for p in live.rglob("*") if p.is_file()) == before
