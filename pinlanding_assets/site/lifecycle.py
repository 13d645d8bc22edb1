"""Every URL the site ever published keeps answering: a page that is gone from a release gets a 301 to
the live page that shows most of its products (else its live category page), or a 410.

The site keeps its own history (``_pinlanding/pages.parquet``: each path ever published, the products
it last showed, its category page, the hash of its products and the date they last changed), so the
choice is made from what the old page showed, and ``lastmod`` changes only when a page's products do.
The redirect map is written in the forms hosts read: ``_redirects`` (Netlify / Cloudflare Pages style),
an nginx ``map`` include, a small HTML page at each old path, and ``_pinlanding/redirects.json`` (what
``pinlanding serve`` answers from).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl

HISTORY = "_pinlanding/pages.parquet"
REDIRECTS_JSON = "_pinlanding/redirects.json"
GONE_PAGE = "410.html"
MIN_OVERLAP_SHARE = 0.2  # of the old page's products a live page must show to stand in for it
HISTORY_SCHEMA = {"path": pl.Utf8, "title": pl.Utf8, "parent": pl.Utf8, "products": pl.List(pl.Utf8),
                  "products_hash": pl.Utf8, "lastmod": pl.Utf8, "status": pl.Utf8, "location": pl.Utf8}


@dataclass(frozen=True)
class LivePage:
    path: str  # relative to the site root, e.g. c/black-dress.html
    title: str
    parent: str | None  # its category page's path (published or not)
    products: tuple[str, ...]  # in feed order


def products_hash(products: tuple[str, ...] | list[str]) -> str:
    """What ``lastmod`` follows: the page's products in order."""
    return hashlib.sha256("\n".join(products).encode()).hexdigest()[:16]


def read_history(site: Path) -> pl.DataFrame:
    path = site / HISTORY
    return pl.read_parquet(path).cast(HISTORY_SCHEMA) if path.is_file() else pl.DataFrame(schema=HISTORY_SCHEMA)


def product_pages(live: dict[str, set[str]]) -> dict[str, list[str]]:
    """product -> the live pages showing it (so a gone page's overlaps are counted from its own products)."""
    holders: dict[str, list[str]] = {}
    for path in sorted(live):
        for product in live[path]:
            holders.setdefault(product, []).append(path)
    return holders


def redirect_target(old_products: list[str], parent: str | None, live: dict[str, set[str]],
                    min_share: float = MIN_OVERLAP_SHARE, holders: dict[str, list[str]] | None = None) -> str | None:
    """The live page showing the most of ``old_products`` (at least ``min_share`` of them; ties go to
    the smaller path), else the live ``parent``, else None (gone). ``holders``: ``product_pages(live)``."""
    old = set(old_products)
    holders = product_pages(live) if holders is None else holders
    overlaps = Counter(path for product in old for path in holders.get(product, ()))
    if overlaps:
        best, overlap = min(overlaps.items(), key=lambda item: (-item[1], item[0]))
        if overlap >= min_share * len(old):
            return best
    return parent if parent in live else None


def next_history(previous: pl.DataFrame, pages: list[LivePage], build_date: str) -> pl.DataFrame:
    """The history after this build: live pages (``lastmod`` kept while their products are unchanged),
    and every earlier path no longer live as ``redirect`` (with its ``location``) or ``gone``."""
    before = {row["path"]: row for row in previous.iter_rows(named=True)}
    live = {page.path: set(page.products) for page in pages}
    holders = product_pages(live)
    rows = []
    for page in pages:
        digest = products_hash(page.products)
        earlier = before.get(page.path)
        unchanged = earlier is not None and earlier["status"] == "live" and earlier["products_hash"] == digest
        rows.append({"path": page.path, "title": page.title, "parent": page.parent, "products": list(page.products),
                     "products_hash": digest, "lastmod": earlier["lastmod"] if unchanged else build_date,
                     "status": "live", "location": None})
    for path in sorted(set(before) - set(live)):
        row = before[path]
        location = redirect_target(row["products"], row["parent"], live, holders=holders)
        rows.append(row | {"status": "redirect" if location else "gone", "location": location})
    return pl.DataFrame(rows, schema=HISTORY_SCHEMA).sort("path")


def redirect_files(history: pl.DataFrame) -> dict[str, str]:
    """relative path -> text of the redirect map in each host's form (paths from the host's root)."""
    moved = history.filter(pl.col("status") == "redirect").select("path", "location").rows()
    gone = history.filter(pl.col("status") == "gone")["path"].to_list()
    netlify = [f"/{old} /{new} 301!" for old, new in moved] + [f"/{old} /{GONE_PAGE} 410!" for old in gone]
    nginx = ["# Include inside http { }; then inside server { }:",
             "#   if ($pinlanding_moved) { return 301 $pinlanding_moved; }",
             "#   if ($pinlanding_gone) { return 410; }",
             "map $uri $pinlanding_moved {", "    default \"\";",
             *[f"    /{old} /{new};" for old, new in moved], "}",
             "map $uri $pinlanding_gone {", "    default 0;", *[f"    /{old} 1;" for old in gone], "}"]
    answers = {f"/{old}": {"status": 301, "location": f"/{new}"} for old, new in moved}
    answers |= {f"/{old}": {"status": 410, "location": None} for old in gone}
    return {"_redirects": "\n".join(netlify) + "\n" if netlify else "",
            "redirects.nginx.conf": "\n".join(nginx) + "\n",
            REDIRECTS_JSON: json.dumps(dict(sorted(answers.items())), indent=1) + "\n"}


def redirect_answer(answers: dict[str, dict], path: str) -> tuple[int, str | None] | None:
    """(status, location) for a request path the site no longer serves, or None."""
    found = answers.get(path)
    return None if found is None else (int(found["status"]), found["location"])
