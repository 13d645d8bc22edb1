"""Demand assets: search intents from the search log, parsed onto the curated vocabulary."""

import os

import dagster as dg
import polars as pl
from pydantic import Field

from pinlanding_assets.demand.intents import DemandConfig, QueryParser, build_intents, read_search_log
from pinlanding_assets.metadata import figure_markdown, table_preview
from pinlanding_assets.settings import get_paths
from resources.models import minilm_encoder

OWNERS = ["team:search"]


def default_search_log() -> str:
    return os.environ.get("PINLANDING_SEARCH_LOG",
                          str(get_paths().search_log_dir / "aol_fashion_query_counts.tsv"))


class SearchLogConfig(dg.Config):
    path: str = Field(default_factory=default_search_log,
                      description="query + count table (tsv/csv/parquet) or one row per search")
    head_share: float = 0.3
    torso_share: float = 0.7
    embedding_similarity: float = 0.82


def _demand_curve(intents: pl.DataFrame) -> dg.MarkdownMetadataValue:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5))
    for bucket, colour in (("head", "tab:red"), ("torso", "tab:orange"), ("tail", "tab:blue")):
        part = intents.filter(pl.col("bucket") == bucket)
        axis.scatter(part["rank"], part["demand"], s=6, color=colour, label=f"{bucket} ({part.height})")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("query rank")
    axis.set_ylabel("demand (distinct users)")
    axis.legend()
    axis.set_title("search demand curve")
    return figure_markdown(figure)


@dg.multi_asset(
    outs={
        "query_intents": dg.AssetOut(description="Normalised queries with demand, head/torso/tail bucket, attribute "
                                                 "slots, unparsed remainder and near-duplicate group.",
                                     kinds={"polars", "parquet"}, owners=OWNERS),
        "search_log_quarantine": dg.AssetOut(description="Search-log rows that could not be used, with the reason.",
                                             kinds={"parquet"}, owners=OWNERS),
    },
    ins={"curated_vocabulary": dg.AssetIn()},
    group_name="demand",
)
def query_intents(config: SearchLogConfig, curated_vocabulary: pl.DataFrame):
    """What people search for, in the vocabulary's terms: the demand side of every collection decision."""
    from pathlib import Path

    settings = DemandConfig(head_share=config.head_share, torso_share=config.torso_share,
                            embedding_similarity=config.embedding_similarity)
    log = read_search_log(Path(config.path))
    parser = QueryParser.from_vocabulary(curated_vocabulary, minilm_encoder(), settings)
    intents, quarantine = build_intents(log, parser, settings)
    total = intents["demand"].sum() or 1
    buckets = intents.group_by("bucket").agg(pl.len().alias("intents"), pl.col("demand").sum()).sort("demand", descending=True)
    yield dg.Output(intents, output_name="query_intents", metadata={
        "dagster/row_count": intents.height,
        "source": dg.MetadataValue.path(config.path),
        "demand_measure": log.demand_measure,
        "total_demand": int(total),
        "raw_queries": log.queries.height + log.quarantine.height,
        "quarantined": quarantine.height,
        "intent_groups": intents["group_key"].n_unique(),
        "share_of_demand_parsed": round(intents.filter(pl.col("parsed"))["demand"].sum() / total, 4),
        "share_of_demand_fully_parsed": round(intents.filter(pl.col("fully_parsed"))["demand"].sum() / total, 4),
        "embedding_matches": int(intents["match_methods"].list.count_matches("embedding").sum()),
        "buckets": table_preview(buckets),
        "demand_curve": _demand_curve(intents),
        "top_intents": table_preview(intents, rows=25, columns=["rank", "intent", "demand", "bucket", "attribute_ids",
                                                                "remainder"]),
    })
    yield dg.Output(quarantine, output_name="search_log_quarantine", metadata={
        "dagster/row_count": quarantine.height, "preview": table_preview(quarantine)})
