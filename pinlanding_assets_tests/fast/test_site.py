"""The landing-page site built from small synthetic inputs: escaping, complete files, safe slugs."""

from __future__ import annotations

import http.client
import json
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import polars as pl
import pytest

from pinlanding_assets.cli import make_server
from pinlanding_assets.site.lifecycle import redirect_target
from pinlanding_assets.site.pages import SiteConfig, SiteError, indexable, page_path, safe_path
from pinlanding_assets.site.sitemaps import sitemap_files
from pinlanding_assets_tests.fast.synthetic import (
    SHOP_URL,
    XSS,
    build_shop_site,
    draw_product,
    fashion_rows,
    three_collection_site,
    with_shop_fields,
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
    urls = [(url[0].text, url[1].text) for url in ElementTree.parse(site / "sitemap.xml").getroot()]
    assert urls == [("https://shop.example/index.html", "2026-01-01"), ("https://shop.example/c/jeans.html", "2026-01-01"),
                    ("https://shop.example/c/t-shirt.html", "2026-01-01")], "the 5-product page is not listed"
    assert '<meta name="robots" content="noindex">' in (site / "c" / "men-t-shirt.html").read_text()
    assert "noindex" not in page and "noindex" not in index
    assert (site / "robots.txt").read_text() == ("User-agent: *\nAllow: /\nDisallow: /_pinlanding/\n"
                                                 "Sitemap: https://shop.example/sitemap.xml\n")
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


class _Page(HTMLParser):
    """What the tests read from a page: its JSON-LD blocks, meta tags, card images and links."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.jsonld: list[dict] = []
        self.meta: dict[str, str] = {}
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self._script: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "script":
            assert values.get("type") == "application/ld+json", "the only scripts are structured data"
            self._script = []
        elif tag == "meta":
            self.meta[values.get("property") or values.get("name") or values.get("http-equiv", "")] = values.get(
                "content", "")
        elif tag == "img":
            self.images.append(values)
        elif tag == "a":
            self.links.append(values["href"])

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.jsonld.append(json.loads("".join(self._script)))
            self._script = None

    def of_type(self, kind: str) -> dict:
        (found,) = [block for block in self.jsonld if block["@type"] == kind]
        return found


def _read(site: Path, relative: str) -> _Page:
    return _Page((site / relative).read_text())


def test_every_page_has_breadcrumbs_and_an_item_list(site: Path, site_inputs) -> None:
    collections, feeds, products = site_inputs
    index = _read(site, "index.html")
    assert index.of_type("BreadcrumbList")["itemListElement"] == [
        {"@type": "ListItem", "position": 1, "name": "Home", "item": SHOP_URL + "index.html"}]
    listed = index.of_type("ItemList")["itemListElement"]
    assert [(e["position"], e["url"]) for e in listed] == [
        (1, SHOP_URL + "c/t-shirt.html"), (2, SHOP_URL + "c/men-t-shirt.html"), (3, SHOP_URL + "c/jeans.html")]
    assert listed[1]["name"] == "Men's T-Shirts & <b>More</b>", "JSON-LD holds the text itself"
    titles = dict(zip(products["product_id"], products["title"]))
    for slug in ("t-shirt", "men-t-shirt", "jeans"):
        page = _read(site, f"c/{slug}.html")
        url = f"{SHOP_URL}c/{slug}.html"
        crumbs = page.of_type("BreadcrumbList")["itemListElement"]
        assert [c["position"] for c in crumbs] == list(range(1, len(crumbs) + 1))
        assert crumbs[0]["item"] == SHOP_URL + "index.html" and crumbs[-1]["item"] == url
        items = page.of_type("ItemList")
        feed = feeds.filter(pl.col("collection_id") == slug).sort("rank")["product_id"].to_list()
        assert items["numberOfItems"] == len(feed) == len(items["itemListElement"])
        assert [e["item"]["name"] for e in items["itemListElement"]] == [titles[p] for p in feed]
        assert all(e["item"]["url"].startswith(url + "#p-") for e in items["itemListElement"]), "no shop URL: the card"
        assert page.meta["og:title"] and page.meta["og:url"] == url and page.meta["og:image"].startswith(SHOP_URL)
    tees = _read(site, "c/t-shirt.html")
    assert tees.of_type("ItemList")["itemListElement"][0]["item"]["name"] == XSS
    assert XSS not in (site / "c" / "t-shirt.html").read_text(), "the name cannot close the script block"
    men = tees.of_type("BreadcrumbList")
    assert men["itemListElement"][-1]["name"] == "T-Shirts"


def test_images_load_the_first_row_first_and_say_nothing_twice(site: Path) -> None:
    page = _read(site, "c/t-shirt.html")
    assert [i["loading"] for i in page.images] == ["eager"] * 6 + ["lazy"] * (len(page.images) - 6)
    assert [i.get("fetchpriority") for i in page.images].count("high") == 1 == (page.images[0].get("fetchpriority") == "high")
    assert all(i["alt"] == "" for i in page.images), "the visible name labels the card"
    assert all("srcset" not in i for i in page.images), "60-pixel images have one thumbnail width"


def test_cards_link_to_the_shop_with_price_and_stock(site_inputs, tmp_path: Path) -> None:
    collections, feeds, products = site_inputs
    shop = tmp_path / "shop"
    build_shop_site((collections, feeds, with_shop_fields(products)), shop)
    html = (shop / "c" / "jeans.html").read_text()
    page = _Page(html)
    jeans = feeds.filter(pl.col("collection_id") == "jeans").sort("rank")["product_id"].to_list()
    assert [link for link in page.links if link.startswith("https://shop.example/p/")] == [
        f"https://shop.example/p/{p}?ref=a&b=<c>" for p in jeans]
    assert "?ref=a&amp;b=&lt;c&gt;" in html, "the URL is escaped in the attribute"
    shop_rows = {r["product_id"]: r for r in with_shop_fields(products).iter_rows(named=True)}
    for element, product_id in zip(page.of_type("ItemList")["itemListElement"], jeans):
        row, item = shop_rows[product_id], element["item"]
        assert item["url"] == row["product_url"]
        if row["price"] is None:
            assert "offers" not in item
        else:
            assert item["offers"] == {"@type": "Offer", "price": f"{row['price']:.2f}", "priceCurrency": "USD",
                                      "availability": "https://schema.org/" + (
                                          "OutOfStock" if row["availability"] == "out_of_stock" else "InStock")}
            assert f"${row['price']:,.2f}" in html
    assert html.count('<span class="stock">Out of stock</span>') == sum(
        shop_rows[p]["availability"] == "out_of_stock" for p in jeans)


def test_the_index_gate() -> None:
    config = SiteConfig(min_indexed_products=12, min_indexed_precision=0.6)
    assert indexable(12, None, config) and indexable(40, 0.6, config)
    assert not indexable(11, None, config) and not indexable(40, 0.59, config)


def test_a_sitemap_index_above_fifty_thousand_urls() -> None:
    entries = [(f"c/page-{i:06d}.html", f"2026-01-{1 + i % 28:02d}") for i in range(120_000)]
    files = sitemap_files(SHOP_URL, entries)
    assert sorted(files) == ["sitemap-1.xml", "sitemap-2.xml", "sitemap-3.xml", "sitemap.xml"]
    root = ElementTree.fromstring(files["sitemap.xml"])
    assert root.tag == "{http://www.sitemaps.org/schemas/sitemap/0.9}sitemapindex"
    assert [s[0].text for s in root] == [f"{SHOP_URL}sitemap-{n}.xml" for n in (1, 2, 3)]
    urls = [u[0].text for n in (1, 2, 3) for u in ElementTree.fromstring(files[f"sitemap-{n}.xml"])]
    assert [len(ElementTree.fromstring(files[f"sitemap-{n}.xml"])) for n in (1, 2, 3)] == [50_000, 50_000, 20_000]
    assert urls == [SHOP_URL + path for path, _ in entries]
    assert list(sitemap_files(SHOP_URL, entries[:50_000])) == ["sitemap.xml"]


def test_the_redirect_goes_where_most_products_went() -> None:
    live = {"c/a.html": {"1", "2", "3"}, "c/b.html": {"3", "4"}, "c/dress.html": {"9"}}
    assert redirect_target(["1", "2", "4"], None, live) == "c/a.html"
    assert redirect_target(["3", "4", "5", "6"], None, live) == "c/b.html"
    assert redirect_target(["2", "4"], None, live) == "c/a.html", "a tie goes to the smaller path"
    assert redirect_target(["1"] + [str(i) for i in range(10, 20)], "c/dress.html", live) == "c/dress.html", \
        "under a fifth of the products: the category page"
    assert redirect_target(["x"], "c/shoes.html", live) is None, "no overlap, no live parent: gone"


def _status(port: int, path: str) -> tuple[int, str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status, response.getheader("Location")


def test_removed_pages_redirect_or_say_gone(site_inputs, tmp_path: Path) -> None:
    collections, feeds, products = site_inputs
    live = tmp_path / "live"
    build_shop_site(site_inputs, live, build_date="2026-01-01")
    kept = feeds.filter(pl.col("collection_id") == "t-shirt")
    build_shop_site((collections, kept, products), live, build_date="2026-02-01")
    assert (live / "_redirects").read_text() == ("/c/men-t-shirt.html /c/t-shirt.html 301!\n"
                                                "/c/jeans.html /410.html 410!\n")
    nginx = (live / "redirects.nginx.conf").read_text()
    assert "    /c/men-t-shirt.html /c/t-shirt.html;" in nginx and "    /c/jeans.html 1;" in nginx
    moved = _Page((live / "c" / "men-t-shirt.html").read_text())
    assert moved.meta["refresh"] == f"0; url={SHOP_URL}c/t-shirt.html" and moved.meta["robots"] == "noindex"
    assert f'<link rel="canonical" href="{SHOP_URL}c/t-shirt.html">' in (live / "c" / "men-t-shirt.html").read_text()
    assert "no longer available" in (live / "c" / "jeans.html").read_text()
    sitemap = [(u[0].text, u[1].text) for u in ElementTree.parse(live / "sitemap.xml").getroot()]
    assert sitemap == [(SHOP_URL + "index.html", "2026-02-01"), (SHOP_URL + "c/t-shirt.html", "2026-01-01")], \
        "lastmod moves only when a page's products change"

    build_shop_site((collections, feeds, products), live, build_date="2026-03-01")
    assert (live / "_redirects").read_text() == "", "pages that come back are live again"
    assert re.search(r"jeans.html</loc><lastmod>2026-03-01", (live / "sitemap.xml").read_text())

    build_shop_site((collections, kept, products), live, build_date="2026-04-01")
    server = make_server(live, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert _status(port, "/c/men-t-shirt.html") == (301, "/c/t-shirt.html")
        assert _status(port, "/c/jeans.html")[0] == 410
        assert _status(port, "/c/t-shirt.html") == (200, None)
        assert _status(port, "/_pinlanding/pages.parquet")[0] == 404, "the site's records are not served"
    finally:
        server.shutdown()
        server.server_close()
