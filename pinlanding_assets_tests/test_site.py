"""The landing-page site: safe rendering, and a real browser (Debian's Chromium via Playwright) on it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from pinlanding_assets.cli import make_server
from pinlanding_assets_tests.fast.synthetic import XSS, build_shop_site, three_collection_site

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def site_inputs(fashion_rows: list[dict[str, str]], fashion_dir: Path) -> tuple[pl.DataFrame, ...]:
    """Real catalog products in three collections; one product is named like an XSS attack."""
    rows = [r for r in fashion_rows if r["articleType"] in {"Tshirts", "Jeans"}][:40]
    return three_collection_site(rows, [str(fashion_dir / "images" / f"{r['id']}.jpg") for r in rows], men=10)


@pytest.fixture(scope="module")
def site(site_inputs, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site") / "site"
    summary = build_shop_site(site_inputs, target)
    assert summary.collection_pages == 3 and summary.pages == 4 and summary.thumbnails == 40
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
    assert page.eval_on_selector_all("script", "s => s.length") == 0
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
