"""The landing-page site asset: static HTML pages, thumbnails, sitemap.xml and robots.txt."""

import base64
import io
import math
import time

import dagster as dg
import polars as pl
from pydantic import Field

from pinlanding_assets.catalog.products import SHOP_FIELDS, with_shop_columns
from pinlanding_assets.collections.feeds import read_feeds
from pinlanding_assets.metadata import table_preview
from pinlanding_assets.partitions import all_drops_in, concat_partitions, landed_drops, model_releases
from pinlanding_assets.refresh.conditions import PUBLISH
from pinlanding_assets.refresh.releases import scored_versions
from pinlanding_assets.settings import ProjectSettings, Settings, fill_unset
from pinlanding_assets.site.pages import THUMBNAIL_WIDTHS, SiteConfig, build_site
from pinlanding_assets.site.thumbnails import collage, make_thumbnails_with_ray, thumbnail_name
from resources.ray_pool import RayPool

OWNERS = ["team:merchandising"]


class SiteRunConfig(dg.Config):
    """Unset fields take the project's settings (PINLANDING_SITE_URL)."""

    base_url: str | None = Field(None, description="where the site will be served; used in sitemap.xml, canonical "
                                                   "links and structured data")

    def resolved(self, project: Settings) -> "SiteRunConfig":
        return fill_unset(self, base_url=project.site.url)


def collection_precision(collections: pl.DataFrame, reliability: pl.DataFrame) -> dict[str, float]:
    """A collection's estimated precision: the product of its attributes' (the chance all are right),
    for collections whose every attribute has an estimate."""
    known = {a: p for a, p in zip(reliability["attribute_id"], reliability["estimated_precision"]) if p is not None}
    return {row["collection_id"]: math.prod(known[a] for a in row["attribute_ids"])
            for row in collections.iter_rows(named=True) if all(a in known for a in row["attribute_ids"])}


def _collage_markdown(site, feeds: pl.DataFrame, products: pl.DataFrame, collection_id: str) -> dg.MarkdownMetadataValue:
    top = feeds.filter(pl.col("collection_id") == collection_id).sort("rank").head(12).join(
        products, on="product_id", how="left").sort("rank")
    paths = [site / "thumbs" / thumbnail_name(p, THUMBNAIL_WIDTHS[0]) for p in top["image_path"]]
    buffer = io.BytesIO()
    collage(paths).save(buffer, "PNG")
    return dg.MetadataValue.md(f"![{collection_id}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})")


@dg.asset(
    ins={"collections": dg.AssetIn(), "collection_feeds": dg.AssetIn(), "publish_exclusions": dg.AssetIn(),
         "attribute_reliability": dg.AssetIn(), "catalog_products": all_drops_in()},
    partitions_def=model_releases, group_name="site", kinds={"html"}, owners=OWNERS,
    automation_condition=PUBLISH,
)
def landing_pages(context: dg.AssetExecutionContext, config: SiteRunConfig, project: ProjectSettings, ray_pool: RayPool,
                  collections: pl.DataFrame,
                  collection_feeds: pl.DataFrame, publish_exclusions: pl.DataFrame,
                  attribute_reliability: pl.DataFrame, catalog_products: dict[str, pl.DataFrame]) -> dg.Output[pl.DataFrame]:
    """A static site people can open: a page per published collection (ranked grid, breadcrumbs,
    related collections), an index grouped by facet, sitemap.xml and robots.txt. `pinlanding serve`.
    The live site is one release's, swapped in whole; materializing an older release's partition
    publishes that release again."""
    release = context.partition_key
    config = config.resolved(project)
    paths = project.paths
    feeds = read_feeds(paths.feed_rows_dir(release))
    products = with_shop_columns(concat_partitions(catalog_products, landed_drops(context.instance))).select(
        "product_id", "title", "image_path", *SHOP_FIELDS)
    titles = dict(zip(collection_feeds["collection_id"], collection_feeds["title"]))
    collections = collections.with_columns(pl.col("collection_id").replace_strict(titles, default=pl.col("title"))
                                           .alias("title"))
    started = time.perf_counter()
    site = SiteConfig(base_url=config.base_url, release=release, min_indexed_products=project.site.min_indexed_products,
                      min_indexed_precision=project.site.min_indexed_precision)
    summary = build_site(collections, feeds, products, paths.site_dir, site, make_thumbnails_with_ray,
                         workers=max(1, int(ray_pool.cpus_available() or 1)),
                         precision=collection_precision(collections, attribute_reliability))
    context.log.info(f"release {release}: site built ({summary.thumbnails} thumbnails as Ray tasks, "
                     f"{summary.collection_pages} pages)")
    pages = pl.DataFrame({"path": ["index.html", *[f"c/{c}.html" for c in sorted(feeds["collection_id"].unique())]]})
    pages = pages.with_columns(pl.col("path").map_elements(lambda p: (summary.path / p).stat().st_size,
                                                           return_dtype=pl.Int64).alias("bytes"))
    first = collections.sort("rank").filter(pl.col("collection_id").is_in(feeds["collection_id"].unique().to_list()))
    context.log.info(f"published release {release}: {summary.collection_pages} collection pages")
    metadata = {
        "dagster/row_count": pages.height,
        "release": release,
        "drops_left_out": dg.MetadataValue.json({d: r for d, r in publish_exclusions.iter_rows()}),
        "drops_on_pages": dg.MetadataValue.json(scored_versions(context.instance, release)),
        "pages": summary.pages, "collection_pages": summary.collection_pages, "thumbnails": summary.thumbnails,
        "indexed_pages": summary.indexed_pages, "noindex_pages": summary.noindex_pages,
        "redirected_urls": summary.redirects, "gone_urls": summary.gone,
        "redirects": table_preview(summary.history.filter(pl.col("status") != "live")
                                   .select("path", "status", "location", "title"), rows=20),
        "site": dg.MetadataValue.path(str(summary.path)),
        "largest_page_kb": round(pages["bytes"].max() / 1024, 1) if pages.height else 0,
        "seconds": round(time.perf_counter() - started, 1),
        "serve": dg.MetadataValue.md("`pinlanding serve` then open http://localhost:8000/"),
    }
    if first.height:
        metadata["top_collection"] = first["title"][0]
        metadata["top_collection_collage"] = _collage_markdown(summary.path, feeds, products, first["collection_id"][0])
    return dg.Output(pages, metadata=metadata)
