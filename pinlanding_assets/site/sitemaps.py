"""sitemap.xml: one file up to the protocol's 50,000 URLs, above that a sitemap index over numbered files."""

from __future__ import annotations

from xml.sax.saxutils import escape as xml_escape

MAX_URLS = 50_000  # per sitemap file (sitemaps.org)
NAMESPACE = "http://www.sitemaps.org/schemas/sitemap/0.9"


def _urlset(base_url: str, entries: list[tuple[str, str]]) -> str:
    urls = "".join(f"<url><loc>{xml_escape(base_url + path)}</loc><lastmod>{lastmod}</lastmod></url>\n"
                   for path, lastmod in entries)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{NAMESPACE}">\n{urls}</urlset>\n'


def sitemap_files(base_url: str, entries: list[tuple[str, str]], limit: int = MAX_URLS) -> dict[str, str]:
    """file name -> text. ``entries``: (path relative to ``base_url``, lastmod YYYY-MM-DD) of every page
    to list. ``sitemap.xml`` is the sitemap itself or, above ``limit`` URLs, the index of sitemap-1.xml,
    sitemap-2.xml, ... (each with the newest lastmod of its pages)."""
    if len(entries) <= limit:
        return {"sitemap.xml": _urlset(base_url, entries)}
    files, listed = {}, []
    for number, start in enumerate(range(0, len(entries), limit), 1):
        chunk = entries[start:start + limit]
        name = f"sitemap-{number}.xml"
        files[name] = _urlset(base_url, chunk)
        listed.append(f"<sitemap><loc>{xml_escape(base_url + name)}</loc>"
                      f"<lastmod>{max(lastmod for _, lastmod in chunk)}</lastmod></sitemap>\n")
    files["sitemap.xml"] = (f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns="{NAMESPACE}">\n'
                            f'{"".join(listed)}</sitemapindex>\n')
    return files
