"""Demand assets. The search log is a folder of week files; each week is a partition:

    search_log [week] (external: the week's files, reported by search_log_sensor)
      -> query_intents [week] (+ search_log_quarantine): the week's normalised queries and their demand
      -> demand_window [week]: the rolling window of weeks ending there, ranked head / torso / tail
      -> demand_intents [release]: the latest window parsed onto a release's vocabulary
"""

import datetime as dt

import dagster as dg
import polars as pl

from pinlanding_assets.demand.intents import (
    DemandConfig,
    QueryParser,
    aggregate,
    combine_weeks,
    parse_intents,
    read_week,
    search_quarantine,
)
from pinlanding_assets.metadata import figure_markdown, table_preview
from pinlanding_assets.partitions import log_weeks, model_releases
from pinlanding_assets.refresh.conditions import PUBLISH, SEARCH_WEEK, WINDOW
from pinlanding_assets.settings import ProjectSettings
from resources.models import minilm_encoder

OWNERS = ["team:search"]


class DemandRunConfig(dg.Config):
    head_share: float = 0.3
    torso_share: float = 0.7
    embedding_similarity: float = 0.82

    def demand_config(self) -> DemandConfig:
        return DemandConfig(head_share=self.head_share, torso_share=self.torso_share,
                            embedding_similarity=self.embedding_similarity)


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
    axis.set_ylabel("demand (distinct users per week)")
    axis.legend()
    axis.set_title("search demand curve")
    return figure_markdown(figure)


def demand_assets(weeks: dg.PartitionsDefinition, window_weeks: int) -> list:
    """The demand group over ``weeks`` (the log folder's weeks, fixed when the code location loads) with
    a rolling window of ``window_weeks`` (PINLANDING_DEMAND_WEEKS): both shape partitions and mappings,
    so the code location builds these from its settings."""
    search_log = dg.AssetSpec(
        "search_log", partitions_def=weeks, group_name="demand", kinds={"tsv"}, owners=OWNERS,
        description="The week's search-log files in the log folder (``*-YYYY-Www.tsv|csv|parquet``): a query + count "
                    "table or one row per search. Reported by search_log_sensor when a week's files change.",
    )

    @dg.multi_asset(
        outs={
            "query_intents": dg.AssetOut(description="The week's normalised queries with demand (distinct users), "
                                                     "searches, variants and head/torso/tail bucket.",
                                         kinds={"polars", "parquet"}, owners=OWNERS, automation_condition=SEARCH_WEEK),
            "search_log_quarantine": dg.AssetOut(description="Search-log rows of the week that could not be used, with the "
                                                             "reason.", kinds={"parquet"}, owners=OWNERS,
                                                 automation_condition=SEARCH_WEEK),
        },
        deps=[search_log], partitions_def=weeks, group_name="demand",
    )
    def query_intents(context: dg.AssetExecutionContext, config: DemandRunConfig, project: ProjectSettings):
        """What people searched for in one week. A week without files is an empty partition, not an error."""
        monday = dt.date.fromisoformat(context.partition_key)
        files = log_weeks(project.paths.search_log_dir).get(monday, [])
        log = read_week(files, monday)
        intents, unusable = aggregate(log.queries, config.demand_config())
        quarantine = search_quarantine(log, unusable)
        context.log.info(f"week {context.partition_key}: {len(files)} file(s), {intents.height} intents, "
                         f"{quarantine.height} rows quarantined")
        yield dg.Output(intents, output_name="query_intents", metadata={
            "dagster/row_count": intents.height,
            "files": dg.MetadataValue.json([str(f) for f in files]),
            "demand_measure": log.demand_measure,
            "total_demand": int(intents["demand"].sum()),
            "quarantined": quarantine.height,
            "top_intents": table_preview(intents, rows=15, columns=["rank", "intent", "demand", "searches", "bucket"]),
        })
        yield dg.Output(quarantine, output_name="search_log_quarantine", metadata={
            "dagster/row_count": quarantine.height, "preview": table_preview(quarantine)})


    @dg.asset(
        ins={"query_intents": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-(window_weeks - 1), end_offset=0, allow_nonexistent_upstream_partitions=True))},
        partitions_def=weeks, group_name="demand", kinds={"polars", "parquet"}, owners=OWNERS,
        automation_condition=WINDOW,
    )
    def demand_window(context: dg.AssetExecutionContext, config: DemandRunConfig,
                      query_intents: dict[str, pl.DataFrame]) -> dg.Output[pl.DataFrame]:
        """Demand over the PINLANDING_DEMAND_WEEKS weeks ending with this one, ranked and bucketed."""
        window = combine_weeks(query_intents, config.demand_config())
        total = int(window["demand"].sum())
        buckets = window.group_by("bucket").agg(pl.len().alias("intents"), pl.col("demand").sum()).sort(
            "demand", descending=True)
        metadata = {
            "dagster/row_count": window.height,
            "weeks": dg.MetadataValue.json(sorted(query_intents)),
            "total_demand": total,
            "buckets": table_preview(buckets),
            "top_intents": table_preview(window, rows=25, columns=["rank", "intent", "demand", "bucket"]),
        }
        if window.height:
            metadata["demand_curve"] = _demand_curve(window)
        return dg.Output(window, metadata=metadata)


    @dg.asset(
        ins={"demand_window": dg.AssetIn(partition_mapping=dg.LastPartitionMapping()),
             "curated_vocabulary": dg.AssetIn()},
        partitions_def=model_releases, group_name="demand", kinds={"polars", "parquet"}, owners=OWNERS,
        automation_condition=PUBLISH,
    )
    def demand_intents(config: DemandRunConfig, demand_window: pl.DataFrame,
                       curated_vocabulary: pl.DataFrame) -> dg.Output[pl.DataFrame]:
        """The latest demand window in the release's terms: attribute slots (longest n-gram, then MiniLM
        similarity), unparsed remainder, near-duplicate groups."""
        parser = QueryParser.from_vocabulary(curated_vocabulary, minilm_encoder(), config.demand_config())
        intents = parse_intents(demand_window, parser)
        total = intents["demand"].sum() or 1
        return dg.Output(intents, metadata={
            "dagster/row_count": intents.height,
            "intent_groups": intents["group_key"].n_unique(),
            "share_of_demand_parsed": round(intents.filter(pl.col("parsed"))["demand"].sum() / total, 4),
            "share_of_demand_fully_parsed": round(intents.filter(pl.col("fully_parsed"))["demand"].sum() / total, 4),
            "embedding_matches": int(intents["match_methods"].list.count_matches("embedding").sum()),
            "top_intents": table_preview(intents, rows=25, columns=["rank", "intent", "demand", "bucket", "attribute_ids",
                                                                    "remainder"]),
        })

    return [search_log, query_intents, demand_window, demand_intents]
