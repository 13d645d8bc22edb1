"""Search-log reading, quarantine and aggregation on small synthetic logs."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pinlanding_assets.demand.intents import (
    DemandConfig,
    SearchLogError,
    aggregate,
    combine_weeks,
    read_search_log,
)


def test_one_row_per_search_counts_distinct_users(tmp_path: Path) -> None:
    log = tmp_path / "searches.csv"
    log.write_text("query,user_id\nblack dress,u1\nblack dress,u1\nblack dress,u2\nsandals,u3\n")
    parsed = read_search_log(log)
    demand = dict(zip(parsed.queries["query"], parsed.queries["demand"]))
    searches = dict(zip(parsed.queries["query"], parsed.queries["searches"]))
    assert demand == {"black dress": 2, "sandals": 1} and searches["black dress"] == 3


def test_unreadable_logs_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(SearchLogError, match="not found"):
        read_search_log(tmp_path / "missing.tsv")
    (tmp_path / "bad.csv").write_text("term,count\nshoes,3\n")
    with pytest.raises(SearchLogError, match="no 'query' column"):
        read_search_log(tmp_path / "bad.csv")


def test_demand_aggregates_ranks_and_sums_weeks() -> None:
    config = DemandConfig()
    week = pl.DataFrame({"query": ["Black Jeans", "black  jeans!", "red dress", "??"], "searches": [5, 2, 4, 1],
                         "demand": [3, 2, 4, 1], "first_seen": [None] * 4, "last_seen": [None] * 4},
                        schema_overrides={"first_seen": pl.Utf8, "last_seen": pl.Utf8})
    intents, unusable = aggregate(week, config)
    assert intents["intent"].to_list() == ["black jeans", "red dress"] and intents["demand"].to_list() == [5, 4]
    assert intents["variants"][0].to_list() == ["Black Jeans", "black  jeans!"] and unusable["query"].to_list() == ["??"]
    assert intents["rank"].to_list() == [1, 2] and intents["bucket"].to_list() == ["head", "torso"]
    window = combine_weeks({"2006-W10": intents, "2006-W11": intents.filter(pl.col("intent") == "red dress")}, config)
    assert window.select("intent", "demand").rows() == [("red dress", 8), ("black jeans", 5)]
    assert window["weeks"][0].to_list() == ["2006-W10", "2006-W11"]
    assert combine_weeks({}, config).is_empty()
