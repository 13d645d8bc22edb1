"""The landing-page site: safe rendering, a real browser (Debian's Chromium via Playwright) on it, the
URL lifecycle and merchandising overrides as a shopper meets them, and Lighthouse's audit."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from pinlanding_assets.cli import make_server
from pinlanding_assets.collections.overrides import Merchandising, Overrides, accepted_titles, apply_overrides
from pinlanding_assets_tests.fast.synthetic import XSS, build_shop_site, three_collection_site, with_shop_fields

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LIGHTHOUSE = Path(__file__).resolve().parent.parent / ".lighthouse" / "node_modules" / ".bin" / "lighthouse"


@pytest.fixture(scope="module")
def site_inputs(fashion_rows: list[dict[str, str]], fashion_dir: Path) -> tuple[pl.DataFrame, ...]:
    """Real catalog products in three collections; one product is named like an XSS attack."""
    rows = [r for r in fashion_rows if r["articleType"] in {"Tshirts", "Jeans"}][:80]
    return three_collection_site(rows, [str(fashion_dir / "images" / f"{r['id']}.jpg") for r in rows], men=20)


@pytest.fixture(scope="module")
def site(site_inputs, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site") / "site"
    collections, feeds, products = site_inputs
    summary = build_shop_site((collections, feeds, with_shop_fields(products)), target)
    assert summary.collection_pages == 3 and summary.pages == 4 and summary.indexed_pages == 4
    assert summary.thumbnails == 160, "two widths of each 224-pixel image"
    return target


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    httpd = make_server(site, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} missing: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def _open(browser, url: str, width: int = 1280):
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    response = page.goto(url, wait_until="load")
    assert response is not None and response.ok, url
    return page, errors, dialogs


def _images_decode(page) -> None:
    page.evaluate("() => Promise.all([...document.images].map(i => { i.loading = 'eager'; return i.decode(); }))")
    widths = page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
    assert widths and min(widths) > 0


def test_index_and_collection_pages_in_chromium(browser, server: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page, errors, dialogs = _open(browser, server + "index.html")
    links = page.eval_on_selector_all("main a", "links => links.map(a => a.href)")
    assert len(links) >= 4
    page.screenshot(path=str(ARTIFACTS / "index.png"), full_page=True)
    for link in sorted(set(links)):
        assert page.request.get(link).ok, f"broken link {link}"
    assert errors == [] and dialogs == []
    page.close()

    page, errors, dialogs = _open(browser, server + "c/t-shirt.html", width=390)
    _images_decode(page)
    names = page.eval_on_selector_all(".grid .name", "spans => spans.map(s => s.textContent)")
    assert XSS in names, "the product named like a script is shown as text"
    scripts = page.eval_on_selector_all("script", "s => s.map(e => [e.type, e.textContent])")
    assert [kind for kind, _ in scripts] == ["application/ld+json"] * 2, "structured data, nothing that runs"
    items = [json.loads(text) for _, text in scripts][1]["itemListElement"]
    assert items[0]["item"]["name"] == XSS and items[0]["item"]["url"].startswith("https://shop.example/p/")
    assert page.eval_on_selector_all("h1", "h => h[0].textContent") == "T-Shirts"
    crumbs = page.eval_on_selector_all("nav.crumbs a", "links => links.map(a => a.href)")
    related = page.eval_on_selector_all("section.facet a", "links => links.map(a => a.href)")
    assert crumbs[0].endswith("/index.html") and any(r.endswith("/c/men-t-shirt.html") for r in related)
    for link in crumbs + related:
        assert page.request.get(link).ok, f"broken link {link}"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll on a phone"
    page.screenshot(path=str(ARTIFACTS / "collection-phone.png"), full_page=True)
    assert errors == [] and dialogs == []
    page.close()


def test_a_removed_collection_redirects_and_an_override_shows(browser, site_inputs, tmp_path: Path) -> None:
    """The next release drops the men's page and a merchandiser pins, renames and excludes on the jeans
    page: the old URL answers 301 to the page that shows its products, and the jeans page shows the edit."""
    collections, feeds, products = site_inputs
    jeans = feeds.filter(pl.col("collection_id") == "jeans").sort("rank")["product_id"].to_list()
    overrides = Overrides.model_validate({"collections": {"jeans": {
        "pin": {jeans[-1]: 1}, "exclude": [jeans[0]], "title": "Denim Edit"}}})
    candidates = feeds.filter(pl.col("collection_id") != "men-t-shirt").with_columns(
        pl.lit("x").alias("anchor"), pl.lit(1.0).alias("relevance"))
    shaped = apply_overrides(candidates, Merchandising(overrides, frozenset(products["product_id"])), 100)
    renamed = collections.with_columns(pl.col("collection_id").replace_strict(
        accepted_titles(overrides, collections)[0], default=pl.col("title")).alias("title"))
    live = tmp_path / "live"
    build_shop_site(site_inputs, live)
    build_shop_site((renamed, shaped.select("collection_id", "rank", "product_id"), products), live)
    httpd = make_server(live, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    root = f"http://127.0.0.1:{httpd.server_address[1]}/"
    try:
        page = browser.new_page()
        response = page.goto(root + "c/men-t-shirt.html", wait_until="load")
        assert page.url == root + "c/t-shirt.html" and response.ok
        assert response.request.redirected_from.response().status == 301
        assert page.request.get(root + "c/men-t-shirt.html", max_redirects=0).status == 301
        assert (live / "_redirects").read_text() == "/c/men-t-shirt.html /c/t-shirt.html 301!\n"
        page.goto(root + "c/jeans.html", wait_until="load")
        assert page.eval_on_selector("h1", "h => h.textContent") == "Denim Edit"
        names = page.eval_on_selector_all(".grid .name", "spans => spans.map(s => s.textContent)")
        titles = dict(zip(products["product_id"], products["title"]))
        assert names[0] == titles[jeans[-1]] and titles[jeans[0]] not in names and len(names) == len(jeans) - 1
        page.screenshot(path=str(ARTIFACTS / "collection-overridden.png"), full_page=True)
        page.close()
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("path", ["index.html", "c/t-shirt.html", "c/men-t-shirt.html", "c/jeans.html"])
def test_lighthouse_scores_on_a_phone(server: str, path: str) -> None:
    """Lighthouse 12.2.3's mobile audit (its default: emulated phone, simulated slow 4G) in Debian's
    Chromium; the JSON report is kept in test-artifacts/."""
    if not LIGHTHOUSE.is_file():
        pytest.fail(f"{LIGHTHOUSE} missing: `make test` installs it (make lighthouse)")
    ARTIFACTS.mkdir(exist_ok=True)
    report = ARTIFACTS / f"lighthouse-{path.replace('/', '-').removesuffix('.html')}.json"
    subprocess.run([str(LIGHTHOUSE), server + path, "--quiet", "--output=json", f"--output-path={report}",
                    "--only-categories=performance,accessibility,best-practices,seo",
                    "--chrome-flags=" + " ".join(CHROMIUM_FLAGS)], check=True, timeout=300,
                   env={**os.environ, "CHROME_PATH": str(CHROMIUM)})
    result = json.loads(report.read_text())
    scores = {key: round(category["score"] * 100) for key, category in result["categories"].items()}
    failing = sorted(audit["id"] for audit in result["audits"].values()
                     if audit.get("score") is not None and audit["score"] < 1 and audit.get("scoreDisplayMode") == "binary")
    assert scores["accessibility"] == scores["best-practices"] == scores["seo"] == 100, (scores, failing)
    assert scores["performance"] >= 95, (scores, failing)


def test_pinlanding_serve_command(site: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    from pinlanding_assets_tests.conftest import free_port, wait_for_port

    port = free_port()
    server = subprocess.Popen([Path(sys.executable).parent / "pinlanding", "serve", "--dir", str(site), "--port",
                               str(port)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_port(port, timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/c/jeans.html", timeout=10) as response:
            assert response.status == 200 and b"<h1>Jeans</h1>" in response.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/robots.txt", timeout=10) as response:
            assert response.read().startswith(b"User-agent: *")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    missing = subprocess.run([Path(sys.executable).parent / "pinlanding", "serve", "--dir", str(site / "nope")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no site at" in missing.stderr
