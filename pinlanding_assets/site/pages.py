"""The landing-page site: one page per collection, an index grouped by facet, sitemap and robots.

Pages are rendered by Jinja2 with autoescaping on for every template, so titles, product names and
model output are always text, never markup. Slugs are checked against a strict pattern and every
path is resolved inside the site directory before anything is written. The site is built in a
staging directory and swapped in whole: a failed build leaves the previous site, not half of a new one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import polars as pl

from pinlanding_assets.catalog.products import AVAILABILITY, UNAVAILABLE, with_shop_columns
from pinlanding_assets.collections.titles import slug_for
from pinlanding_assets.facets import DISPLAY_ORDER, FACET_HEADINGS, plural
from pinlanding_assets.site.lifecycle import GONE_PAGE, HISTORY, LivePage, next_history, read_history, redirect_files
from pinlanding_assets.site.sitemaps import sitemap_files
from pinlanding_assets.site.thumbnails import thumbnail_name
from resources.files import written_whole

SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
RELATED = 6

STYLE = """
*{box-sizing:border-box}body{margin:0;font:16px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d1d1f;background:#fafafa}
header,main,footer{max-width:1100px;margin:0 auto;padding:0 16px}header{padding-top:16px}
a{color:#0b57d0;text-decoration:none}a:hover{text-decoration:underline}
.brand{font-weight:700;color:#c8001e}nav.crumbs{font-size:14px;margin:8px 0;color:#555}nav.crumbs a{color:#555}
h1{font-size:28px;margin:8px 0 4px}p.lede{color:#444;margin:0 0 16px}p.aliases{color:#444;margin:-8px 0 16px;font-size:14px}
ul.grid{list-style:none;padding:0;margin:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:14px}
ul.grid li{background:#fff;border-radius:12px;overflow:hidden;box-shadow:0 1px 3px rgba(0,0,0,.08)}
ul.grid a{color:inherit;display:block}
ul.grid img{display:block;width:100%;height:auto;aspect-ratio:3/4;object-fit:cover;background:#eee}
ul.grid .name{display:block;padding:8px 10px 0;font-size:13px;line-height:1.3}
ul.grid .offer{display:block;padding:4px 10px 8px;font-size:13px;font-weight:600}ul.grid .stock{color:#a1001a;font-weight:400}
section.facet{margin:24px 0}section.facet h2{font-size:20px;margin:0 0 8px}
dl.values dt{font-weight:600;margin-top:10px}dl.values dd{margin:2px 0 0}
ul.links{list-style:none;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:8px}
ul.links a{display:inline-block;padding:4px 10px;border-radius:16px;background:#fff;border:1px solid #ddd;font-size:14px}
footer{color:#595959;font-size:13px;padding:24px 16px}
@media (max-width:480px){h1{font-size:22px}ul.grid{grid-template-columns:repeat(2,1fr);gap:10px}}
"""

LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} | PinLanding</title>
<meta name="description" content="{{ description }}">
{% if noindex %}<meta name="robots" content="noindex">
{% endif %}{% if refresh is defined and refresh %}<meta http-equiv="refresh" content="0; url={{ refresh }}">
{% endif %}<link rel="canonical" href="{{ canonical }}">
<meta property="og:type" content="website">
<meta property="og:site_name" content="PinLanding">
<meta property="og:title" content="{{ title }}">
<meta property="og:description" content="{{ description }}">
<meta property="og:url" content="{{ canonical }}">
{% if og_image %}<meta property="og:image" content="{{ og_image }}">
{% endif %}<link rel="stylesheet" href="{{ root }}style.css">
<link rel="icon" href="data:,">
{% for data in jsonld %}<script type="application/ld+json">{{ data | tojson }}</script>
{% endfor %}</head>
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
{% for product in products %}<li id="{{ product.anchor }}">{% if product.url %}<a href="{{ product.url }}">{% endif %}<img src="{{ root }}thumbs/{{ product.thumb }}"{% if product.srcset %} srcset="{{ product.srcset }}" sizes="{{ sizes }}"{% endif %} alt="" width="{{ product.width }}" height="{{ product.height }}"{% if loop.index <= eager %} loading="eager"{% if loop.first %} fetchpriority="high"{% endif %}{% else %} loading="lazy"{% endif %}><span class="name">{{ product.title }}</span>{% if product.url %}</a>{% endif %}{% if product.price or product.out_of_stock %}<span class="offer">{{ product.price }}{% if product.out_of_stock %} <span class="stock">Out of stock</span>{% endif %}</span>{% endif %}</li>
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

MOVED = """{% extends "layout" %}
{% block main %}
<h1>{{ title }}</h1>
<p class="lede">{% if location %}This collection has moved to <a href="{{ location }}">{{ location_title }}</a>.{% else %}This collection is no longer available. <a href="{{ root }}index.html">See every collection</a>.{% endif %}</p>
{% endblock %}
"""

EAGER = 6  # images loaded at once: the first row or two on a phone; the rest load as they scroll in
THUMBNAIL_WIDTHS = (160, 320)  # srcset candidates; a thumbnail is never larger than its image
SIZES = "(max-width: 480px) 50vw, 180px"
CURRENCY_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


class SiteError(ValueError):
    """A page cannot be written safely (bad slug, a path outside the site)."""


@dataclass(frozen=True)
class SiteConfig:
    base_url: str = "http://localhost:8000/"
    release: str = ""  # the model release the site shows, written to release.txt
    min_indexed_products: int = 12  # fewer: the page carries noindex and stays out of the sitemap
    min_indexed_precision: float = 0.6  # so does a page whose estimated precision is lower (when known)
    build_date: str = ""  # lastmod of pages whose products changed (YYYY-MM-DD); default today (UTC)


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.DictLoader({"layout": LAYOUT, "collection": COLLECTION, "index": INDEX, "moved": MOVED}),
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
        sections.append({"id": facet, "label": FACET_HEADINGS.get(facet, facet.title()), "entries": values})
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


def robots(base_url: str) -> str:
    return f"User-agent: *\nAllow: /\nDisallow: /_pinlanding/\nSitemap: {base_url}sitemap.xml\n"


def price_text(price: float | None, currency: str | None) -> str:
    if price is None or currency is None:
        return ""
    sign = CURRENCY_SIGNS.get(currency)
    return f"{sign}{price:,.2f}" if sign else f"{price:,.2f} {currency}"


def breadcrumb_jsonld(base_url: str, trail: list[tuple[str, str]]) -> dict:
    """BreadcrumbList of (name, absolute URL) from the home page to this page."""
    return {"@context": "https://schema.org", "@type": "BreadcrumbList", "itemListElement": [
        {"@type": "ListItem", "position": i, "name": name, "item": url} for i, (name, url) in enumerate(trail, 1)]}


def product_list_jsonld(name: str, page_url: str, items: list[dict]) -> dict:
    """ItemList of the feed's products, in rank order: each a Product with its URL (the shop's product
    page when the catalog has one, else its card on this page), image and, with a price, an Offer."""
    elements = []
    for position, item in enumerate(items, 1):
        product = {"@type": "Product", "name": item["title"], "url": item["url"] or f"{page_url}#{item['anchor']}",
                   "image": item["image_url"]}
        if item["price_value"] is not None:
            product["offers"] = {"@type": "Offer", "price": f"{item['price_value']:.2f}",
                                 "priceCurrency": item["currency"],
                                 **({"availability": f"https://schema.org/{item['availability']}"}
                                    if item["availability"] else {})}
        elements.append({"@type": "ListItem", "position": position, "item": product})
    return {"@context": "https://schema.org", "@type": "ItemList", "name": name, "url": page_url,
            "numberOfItems": len(items), "itemListElement": elements}


def page_list_jsonld(name: str, base_url: str, pages: list[tuple[str, str]]) -> dict:
    """ItemList of collection pages (title, relative path), for the index."""
    return {"@context": "https://schema.org", "@type": "ItemList", "name": name, "numberOfItems": len(pages),
            "itemListElement": [{"@type": "ListItem", "position": i, "name": title, "url": base_url + path}
                                for i, (title, path) in enumerate(pages, 1)]}


@dataclass
class SiteSummary:
    pages: int
    collection_pages: int
    thumbnails: int
    path: Path
    indexed_pages: int = 0
    noindex_pages: int = 0
    redirects: int = 0
    gone: int = 0
    history: pl.DataFrame | None = None


PARALLEL_FROM = 500  # collection pages; fewer are rendered in this process


def _write_pages(pages: list[tuple[str, dict]], staging: str, template_name: str = "collection") -> None:
    """Render and write pages (one worker's share when the site is large)."""
    template = environment().get_template(template_name)
    for relative, values in pages:
        path = safe_path(Path(staging), relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.render(**values), encoding="utf-8")


def _write_in_parallel(pages: list[tuple[str, dict]], staging: Path, workers: int) -> None:
    if workers <= 1 or len(pages) < PARALLEL_FROM:
        _write_pages(pages, str(staging))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    shares = [pages[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_write_pages, shares, [str(staging)] * workers))  # a worker's error is raised here


def _thumbnails(images: list[str], staging: Path, make_thumbnails) -> dict[str, list[tuple[str, int, int]]]:
    """image path -> [(file name, width, height)] for each distinct thumbnail width, smallest first."""
    made: dict[str, list[tuple[str, int, int]]] = {path: [] for path in images}
    for width in THUMBNAIL_WIDTHS:
        for path, (w, h) in make_thumbnails(images, staging / "thumbs", width).items():
            if not made[path] or made[path][-1][1] != w:
                made[path].append((thumbnail_name(path, width), w, h))
            else:
                (staging / "thumbs" / thumbnail_name(path, width)).unlink()
    return made


def indexable(products: int, precision: float | None, config: SiteConfig) -> bool:
    """Whether a page is worth a search engine's index: enough products and, when the release estimates
    it, a high enough chance that its products are what its title says."""
    return products >= config.min_indexed_products and (precision is None or precision >= config.min_indexed_precision)


def build_site(collections: pl.DataFrame, feeds: pl.DataFrame, products: pl.DataFrame, target: Path,
               config: SiteConfig, make_thumbnails, workers: int = 1,
               precision: dict[str, float] | None = None) -> SiteSummary:
    """collections: the collections table; feeds: published feed rows (collection_id, rank, product_id);
    products: product_id, title, image_path and the optional shop fields (product_url, price, currency,
    availability); make_thumbnails(image_paths, out_dir, width) -> {path: (w, h)}; precision: a
    collection's estimated precision, where known. Pages are rendered by ``workers`` processes once
    the site has ``PARALLEL_FROM`` of them. With no published feed it refuses, and the site in service
    stays: an empty site is never swapped in. Pages of earlier builds that are gone now redirect (see
    ``lifecycle``)."""
    if feeds.is_empty():
        raise SiteError("no published collection to show: every topic failed the gates (see the collections, "
                        "attribute_reliability and collection_feeds metadata); the site in service is left as it is")
    build_date = config.build_date or datetime.now(timezone.utc).date().isoformat()
    precision = precision or {}
    published = set(feeds["collection_id"].unique())
    with written_whole(target, directory=True) as staging:
        (staging / "c").mkdir()
        (staging / "thumbs").mkdir()
        (staging / "_pinlanding").mkdir()
        shown = {row["product_id"]: row for row in with_shop_columns(products).join(
            feeds.select("product_id").unique(), on="product_id", how="semi").iter_rows(named=True)}
        thumbs = _thumbnails(sorted({row["image_path"] for row in shown.values()}), staging, make_thumbnails)
        related = related_collections(collections.filter(pl.col("collection_id").is_in(list(published))))
        rows = {r["collection_id"]: r for r in collections.iter_rows(named=True)}
        by_collection = {key[0]: frame["product_id"].to_list() for key, frame in
                         feeds.sort(["collection_id", "rank"]).partition_by("collection_id", as_dict=True).items()}
        footer = "Collections built from what the products are, checked against what people search for."
        home = config.base_url + "index.html"
        pages, live, indexed = [], [], {}
        for slug in sorted(published):
            row, feed = rows[slug], by_collection[slug]
            relative = page_path(slug)
            page_url = config.base_url + relative
            items = []
            for product_id in feed:
                product = shown[product_id]
                sizes = thumbs[product["image_path"]]
                name, width, height = sizes[0]
                items.append({
                    "title": product["title"], "thumb": name, "width": width, "height": height,
                    "srcset": ", ".join(f"../thumbs/{n} {w}w" for n, w, _ in sizes) if len(sizes) > 1 else "",
                    "anchor": "p-" + hashlib.sha1(product_id.encode()).hexdigest()[:12], "url": product["product_url"],
                    "price": price_text(product["price"], product["currency"]), "price_value": product["price"],
                    "currency": product["currency"], "availability": AVAILABILITY.get(product["availability"] or ""),
                    "out_of_stock": product["availability"] in UNAVAILABLE,
                    "image_url": f"{config.base_url}thumbs/{sizes[-1][0]}",
                })
            crumbs = breadcrumbs(row, published)
            trail = [("Home", home)] + [(c["label"], config.base_url + c["href"].removeprefix("../")) for c in crumbs]
            description = f"{len(feed)} {row['title']}, ranked by how closely each one matches."
            index_it = indexable(len(feed), precision.get(slug), config)
            indexed[relative] = index_it
            pages.append((relative, dict(
                title=row["title"], description=description, canonical=page_url, root="../", footer=footer,
                products=items, crumbs=crumbs, aliases=row.get("aliases") or [], eager=EAGER, sizes=SIZES,
                related=[{"slug": o, "title": rows[o]["title"]} for o in related[slug]], noindex=not index_it,
                og_image=items[0]["image_url"] if items else "",
                jsonld=[breadcrumb_jsonld(config.base_url, trail + [(row["title"], page_url)]),
                        product_list_jsonld(row["title"], page_url, items)],
            )))
            category = next((slug_for([p]) for f, p in zip(row["facets"], row["phrases"]) if f == "category"), None)
            live.append(LivePage(relative, row["title"], page_path(category) if category and category != slug else None,
                                 tuple(feed)))
        _write_in_parallel(pages, staging, workers)
        listed = [(rows[s]["title"], page_path(s)) for s in sorted(published, key=lambda s: (rows[s]["rank"], s))]
        index_values = dict(
            title="Shop by collection", description=f"{len(published)} collections from the catalog, grouped by facet.",
            canonical=home, root="", footer=footer, facets=facet_groups(collections, published), noindex=False,
            og_image="", jsonld=[breadcrumb_jsonld(config.base_url, [("Home", home)]),
                                 page_list_jsonld("Shop by collection", config.base_url, listed)])
        (staging / "index.html").write_text(environment().get_template("index").render(**index_values), encoding="utf-8")
        live.append(LivePage("index.html", "Shop by collection", None, tuple(path for _, path in listed)))
        history = next_history(read_history(target), live, build_date)
        _write_moved_pages(history, staging, config, footer)
        for relative, text in redirect_files(history).items():
            (staging / relative).write_text(text, encoding="utf-8")
        history.write_parquet(staging / HISTORY)
        lastmod = dict(zip(history["path"], history["lastmod"]))
        entries = [(path, lastmod[path]) for path in ["index.html", *sorted(indexed)] if indexed.get(path, True)]
        for name, text in sitemap_files(config.base_url, entries).items():
            (staging / name).write_text(text, encoding="utf-8")
        (staging / "style.css").write_text(STYLE.strip() + "\n", encoding="utf-8")
        (staging / "robots.txt").write_text(robots(config.base_url), encoding="utf-8")
        if config.release:
            (staging / "release.txt").write_text(config.release + "\n", encoding="utf-8")
    moved = history.filter(pl.col("status") == "redirect").height
    gone = history.filter(pl.col("status") == "gone").height
    return SiteSummary(pages=len(pages) + 1, collection_pages=len(pages), thumbnails=sum(map(len, thumbs.values())),
                       path=target, indexed_pages=len(entries), noindex_pages=len(pages) + 1 - len(entries),
                       redirects=moved, gone=gone, history=history)


def _write_moved_pages(history: pl.DataFrame, staging: Path, config: SiteConfig, footer: str) -> None:
    """A small page at every old path (for hosts that cannot answer a 301 or 410 themselves), and 410.html."""
    titles = dict(zip(history["path"], history["title"]))
    pages = [(GONE_PAGE, dict(title="No longer available", description="This collection is no longer available.",
                              canonical=config.base_url + GONE_PAGE, root="", footer=footer, noindex=True,
                              og_image="", jsonld=[], location="", location_title=""))]
    for row in history.filter(pl.col("status") != "live").iter_rows(named=True):
        root = "../" * row["path"].count("/")
        location = config.base_url + row["location"] if row["location"] else ""
        pages.append((row["path"], dict(
            title=row["title"], description=f"{row['title']}: " + ("moved." if location else "no longer available."),
            canonical=location or config.base_url + "index.html", root=root, footer=footer, noindex=True,
            og_image="", jsonld=[], refresh=location, location=location, location_title=titles.get(row["location"], ""))))
    _write_pages(pages, str(staging), "moved")
