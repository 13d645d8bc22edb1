"""The landing-page site: one page per collection, an index grouped by facet, sitemap and robots.

Pages are rendered by Jinja2 with autoescaping on for every template, so titles, product names and
model output are always text, never markup. Slugs are checked against a strict pattern and every
path is resolved inside the site directory before anything is written. The site is built in a
staging directory and swapped in whole: a failed build leaves the previous site, not half of a new one.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import jinja2
import polars as pl

from pinlanding_assets.collections.titles import slug_for
from pinlanding_assets.facets import DISPLAY_ORDER, LABELS, plural
from pinlanding_assets.site.thumbnails import thumbnail_name
from resources.tables import replace_directory

SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
RELATED = 6

STYLE = """
*{box-sizing:border-box}body{margin:0;font:16px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d1d1f;background:#fafafa}
header,main,footer{max-width:1100px;margin:0 auto;padding:0 16px}header{padding-top:16px}
a{color:#0b57d0;text-decoration:none}a:hover{text-decoration:underline}
.brand{font-weight:700;color:#e60023}nav.crumbs{font-size:14px;margin:8px 0;color:#555}nav.crumbs a{color:#555}
h1{font-size:28px;margin:8px 0 4px}p.lede{color:#444;margin:0 0 16px}p.aliases{color:#444;margin:-8px 0 16px;font-size:14px}
ul.grid{list-style:none;padding:0;margin:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:14px}
ul.grid li{background:#fff;border-radius:12px;overflow:hidden;box-shadow:0 1px 3px rgba(0,0,0,.08)}
ul.grid img{display:block;width:100%;height:auto;aspect-ratio:3/4;object-fit:cover;background:#eee}
ul.grid .name{display:block;padding:8px 10px;font-size:13px;line-height:1.3}
section.facet{margin:24px 0}section.facet h2{font-size:20px;margin:0 0 8px}
dl.values dt{font-weight:600;margin-top:10px}dl.values dd{margin:2px 0 0}
ul.links{list-style:none;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:8px}
ul.links a{display:inline-block;padding:4px 10px;border-radius:16px;background:#fff;border:1px solid #ddd;font-size:14px}
footer{color:#777;font-size:13px;padding:24px 16px}
@media (max-width:480px){h1{font-size:22px}ul.grid{grid-template-columns:repeat(2,1fr);gap:10px}}
"""

LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} | PinLanding</title>
<meta name="description" content="{{ description }}">
<link rel="canonical" href="{{ canonical }}">
<link rel="stylesheet" href="{{ root }}style.css">
<link rel="icon" href="data:,">
</head>
<body>
<header><a class="brand" href="{{ root }}index.html">PinLanding</a>{% block crumbs %}{% endblock %}</header>
<main>{% block main %}{% endblock %}</main>
<footer>{{ footer }}</footer>
</body>
</html>
"""

COLLECTION = """{% extends "layout" %}
{% block crumbs %}<nav class="crumbs" aria-label="breadcrumbs"><a href="{{ root }}index.html">Home</a>
{% for crumb in crumbs %} › <a href="{{ crumb.href }}">{{ crumb.label }}</a>{% endfor %} › <span>{{ title }}</span></nav>{% endblock %}
{% block main %}
<h1>{{ title }}</h1>
<p class="lede">{{ description }}</p>
{% if aliases %}<p class="aliases">Also searched as: {{ aliases | join(", ") }}</p>{% endif %}
<ul class="grid">
{% for product in products %}<li><img src="{{ root }}thumbs/{{ product.thumb }}" alt="{{ product.title }}" width="{{ product.width }}" height="{{ product.height }}" loading="{{ 'eager' if loop.index <= 8 else 'lazy' }}"><span class="name">{{ product.title }}</span></li>
{% endfor %}</ul>
{% if related %}<section class="facet"><h2>Related collections</h2><ul class="links">
{% for other in related %}<li><a href="{{ root }}c/{{ other.slug }}.html">{{ other.title }}</a></li>{% endfor %}
</ul></section>{% endif %}
{% endblock %}
"""

INDEX = """{% extends "layout" %}
{% block main %}
<h1>{{ title }}</h1>
<p class="lede">{{ description }}</p>
{% for facet in facets %}<section class="facet" id="{{ facet.id }}"><h2>{{ facet.label }}</h2><dl class="values">
{% for value in facet.entries %}<dt id="{{ value.id }}">{{ value.label }}</dt><dd><ul class="links">
{% for page in value.pages %}<li><a href="c/{{ page.slug }}.html">{{ page.title }}</a></li>{% endfor %}
</ul></dd>{% endfor %}</dl></section>
{% endfor %}
{% endblock %}
"""


class SiteError(ValueError):
    """A page cannot be written safely (bad slug, a path outside the site)."""


@dataclass(frozen=True)
class SiteConfig:
    base_url: str = "http://localhost:8000/"
    thumbnail_width: int = 240
    release: str = ""  # the model release the site shows, written to release.txt


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.DictLoader({"layout": LAYOUT, "collection": COLLECTION, "index": INDEX}),
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
    )


def safe_path(site: Path, relative: str) -> Path:
    """``site / relative``, refusing anything that would land outside ``site``."""
    path = (site / relative).resolve()
    if not path.is_relative_to(site.resolve()):
        raise SiteError(f"refusing to write outside the site: {relative!r}")
    return path


def page_path(slug: str) -> str:
    if not SLUG.fullmatch(slug or ""):
        raise SiteError(f"unsafe collection slug {slug!r}")
    return f"c/{slug}.html"


def related_collections(collections: pl.DataFrame, limit: int = RELATED) -> dict[str, list[str]]:
    """Per collection, the others sharing the most attributes (then the higher ranked); only
    collections that share an attribute are compared."""
    sets = {r["collection_id"]: set(r["attribute_ids"]) for r in collections.iter_rows(named=True)}
    rank = dict(zip(collections["collection_id"], collections["rank"]))
    holders: dict[str, list[str]] = {}
    for slug, attributes in sets.items():
        for attribute in attributes:
            holders.setdefault(attribute, []).append(slug)
    related = {}
    for slug, attributes in sets.items():
        others = {o for a in attributes for o in holders[a] if o != slug}
        scored = [(len(attributes & sets[o]) / len(attributes | sets[o]), -rank[o], o) for o in others]
        related[slug] = [o for _, _, o in sorted(scored, reverse=True)[:limit]]
    return related


def facet_groups(collections: pl.DataFrame, published: set[str]) -> list[dict]:
    """Index sections: facet -> value -> the collections that include that value."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for row in collections.sort("rank").iter_rows(named=True):
        if row["collection_id"] not in published:
            continue
        for facet, phrase in zip(row["facets"], row["phrases"]):
            groups.setdefault(facet, {}).setdefault(phrase, []).append(
                {"slug": row["collection_id"], "title": row["title"]})
    sections = []
    for facet in sorted(groups, key=lambda f: (DISPLAY_ORDER.index(f) if f in DISPLAY_ORDER else 99, f)):
        values = [{"id": f"{facet}-{slug_for([phrase])}",
                   "label": plural(phrase).title() if facet == "category" else phrase.title(), "pages": pages}
                  for phrase, pages in sorted(groups[facet].items())]
        sections.append({"id": facet, "label": LABELS.get(facet, facet.title()), "entries": values})
    return sections


def breadcrumbs(row: dict, published: set[str]) -> list[dict]:
    """Home › <category> (its own page when published, else its index entry)."""
    crumbs = []
    for facet, phrase in zip(row["facets"], row["phrases"]):
        slug = slug_for([phrase])
        if facet == "category" and slug != row["collection_id"]:
            href = f"../c/{slug}.html" if slug in published else f"../index.html#category-{slug}"
            crumbs.append({"href": href, "label": plural(phrase).title()})
    return crumbs


def sitemap(base_url: str, paths: list[str]) -> str:
    urls = "".join(f"<url><loc>{xml_escape(base_url + p)}</loc></url>\n" for p in paths)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{urls}</urlset>\n')


def robots(base_url: str) -> str:
    return f"User-agent: *\nAllow: /\nSitemap: {base_url}sitemap.xml\n"


@dataclass
class SiteSummary:
    pages: int
    collection_pages: int
    thumbnails: int
    path: Path


PARALLEL_FROM = 500  # collection pages; fewer are rendered in this process


def _write_pages(pages: list[tuple[str, dict]], staging: str) -> None:
    """Render and write collection pages (one worker's share when the site is large)."""
    template = environment().get_template("collection")
    for relative, values in pages:
        safe_path(Path(staging), relative).write_text(template.render(**values), encoding="utf-8")


def _write_in_parallel(pages: list[tuple[str, dict]], staging: Path, workers: int) -> None:
    if workers <= 1 or len(pages) < PARALLEL_FROM:
        _write_pages(pages, str(staging))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    shares = [pages[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_write_pages, shares, [str(staging)] * workers))  # a worker's error is raised here


def build_site(collections: pl.DataFrame, feeds: pl.DataFrame, products: pl.DataFrame, target: Path,
               config: SiteConfig, make_thumbnails, workers: int = 1) -> SiteSummary:
    """collections: the collections table; feeds: published feed rows (collection_id, rank, product_id);
    products: product_id, title, image_path; make_thumbnails(image_paths, out_dir, width) -> {path: (w, h)}.
    Pages are rendered by ``workers`` processes once the site has ``PARALLEL_FROM`` of them. With no
    published feed it refuses, and the site in service stays: an empty site is never swapped in."""
    if feeds.is_empty():
        raise SiteError("no published collection to show: every topic failed the gates (see the collections, "
                        "attribute_reliability and collection_feeds metadata); the site in service is left as it is")
    published = set(feeds["collection_id"].unique())
    staging = target.with_name(target.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "c").mkdir(parents=True)
    (staging / "thumbs").mkdir()
    shown = products.join(feeds.select("product_id").unique(), on="product_id", how="semi")
    titles = dict(zip(shown["product_id"], shown["title"]))
    images = dict(zip(shown["product_id"], shown["image_path"]))
    sizes = make_thumbnails(sorted(set(images.values())), staging / "thumbs", config.thumbnail_width)
    related = related_collections(collections.filter(pl.col("collection_id").is_in(list(published))))
    rows = {r["collection_id"]: r for r in collections.iter_rows(named=True)}
    by_collection = {key[0]: frame["product_id"].to_list() for key, frame in
                     feeds.sort(["collection_id", "rank"]).partition_by("collection_id", as_dict=True).items()}
    footer = "Collections built from what the products are, checked against what people search for."
    pages = []
    for slug in sorted(published):
        row, feed = rows[slug], by_collection[slug]
        items = [{"title": titles[p], "thumb": thumbnail_name(images[p]),
                  "width": sizes[images[p]][0], "height": sizes[images[p]][1]} for p in feed]
        relative = page_path(slug)
        pages.append((relative, dict(
            title=row["title"], description=f"{len(feed)} {row['title']}, ranked by how closely each one matches.",
            canonical=config.base_url + relative, root="../", footer=footer, products=items,
            crumbs=breadcrumbs(row, published), aliases=row.get("aliases") or [],
            related=[{"slug": o, "title": rows[o]["title"]} for o in related[slug]],
        )))
    _write_in_parallel(pages, staging, workers)
    paths = ["index.html", *[relative for relative, _ in pages]]
    index = environment().get_template("index").render(
        title="Shop by collection", description=f"{len(published)} collections from the catalog, grouped by facet.",
        canonical=config.base_url + "index.html", root="", footer=footer, facets=facet_groups(collections, published))
    (staging / "index.html").write_text(index, encoding="utf-8")
    (staging / "style.css").write_text(STYLE.strip() + "\n", encoding="utf-8")
    (staging / "sitemap.xml").write_text(sitemap(config.base_url, paths), encoding="utf-8")
    (staging / "robots.txt").write_text(robots(config.base_url), encoding="utf-8")
    if config.release:
        (staging / "release.txt").write_text(config.release + "\n", encoding="utf-8")
    replace_directory(staging, target)
    return SiteSummary(pages=len(paths), collection_pages=len(paths) - 1, thumbnails=len(sizes), path=target)
