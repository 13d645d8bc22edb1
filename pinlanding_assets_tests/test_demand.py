"""Search demand: reading untrusted search logs, aggregating demand, parsing intents onto the vocabulary."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pinlanding_assets.demand.intents import (
    DemandConfig,
    QueryParser,
    aggregate,
    build_intents,
    combine_weeks,
    read_search_log,
)
from pinlanding_assets.settings import get_paths
from pinlanding_assets_tests.vocabularies import fashion_vocabulary
from resources.models import minilm_encoder


@pytest.fixture(scope="module")
def parser() -> QueryParser:
    return QueryParser.from_vocabulary(fashion_vocabulary(), minilm_encoder(), DemandConfig())


def test_parsing_exact_embedding_and_remainder(parser: QueryParser) -> None:
    results = dict(zip(["dresses", "prom dresses", "mens black t shirts", "sneakers", "burlington coat factory",
                        "flat shoes"],
                       parser.parse_many(["dresses", "prom dresses", "mens black t shirts", "sneakers",
                                          "burlington coat factory", "flat shoes"])))
    assert results["dresses"]["attribute_ids"] == ["category:dress"] and results["dresses"]["remainder"] == ""
    assert results["prom dresses"]["remainder"] == "prom"
    assert results["mens black t shirts"]["attribute_ids"] == ["gender:men", "colour:black", "category:t-shirt"]
    assert results["sneakers"]["attribute_ids"] == ["category:shoes"]
    assert results["sneakers"]["match_methods"] == ["embedding"]
    assert results["burlington coat factory"]["attribute_ids"] == []
    assert results["flat shoes"]["attribute_ids"] == ["category:flats"] and results["flat shoes"]["remainder"] == ""


def test_real_search_log_buckets_and_groups(parser: QueryParser) -> None:
    log = read_search_log(get_paths().shared_query_counts)
    intents, quarantine = build_intents(log, parser, DemandConfig())
    assert intents.height + quarantine.height >= 3000
    assert intents["rank"].to_list() == list(range(1, intents.height + 1))
    demand = intents["demand"].to_list()
    assert demand == sorted(demand, reverse=True)
    first = {b: intents.filter(pl.col("bucket") == b)["rank"].min() for b in ("head", "torso", "tail")}
    assert first["head"] == 1 < first["torso"] < first["tail"]
    head_share = intents.filter(pl.col("bucket") == "head")["demand"].sum() / intents["demand"].sum()
    assert 0.3 <= head_share < 0.4
    parsed_share = intents.filter(pl.col("parsed"))["demand"].sum() / intents["demand"].sum()
    assert parsed_share > 0.4, "most fashion demand names a product type, a colour or a gender"
    # near-duplicates: the same slots and remainder words, whatever the order or plural
    tshirts = intents.filter(pl.col("attribute_ids") == ["category:t-shirt"]).filter(pl.col("remainder") == "")
    assert tshirts["group_key"].n_unique() == 1 and tshirts.height >= 2
    assert tshirts.filter(pl.col("is_group_leader")).height == 1
    again, _ = build_intents(log, parser, DemandConfig())
    assert again.equals(intents)


def test_weekly_log_split_read_and_windowed(tmp_path: Path) -> None:
    """The real per-search log split into ISO-week files; each week read alone (rows outside it
    quarantined); weeks summed into a window whose demand equals the counts file's."""
    import datetime as dt

    from pinlanding_assets.demand.intents import DemandConfig, read_week, split_search_log
    from pinlanding_assets.partitions import log_weeks

    source = get_paths().shared_search_log
    files = split_search_log(source, tmp_path / "log")
    weeks = log_weeks(tmp_path / "log")
    assert len(files) == 14 and sorted(weeks)[0] == dt.date(2006, 2, 27)
    config = DemandConfig()
    tables = {}
    for monday, paths in weeks.items():
        log = read_week(paths, monday)
        assert log.quarantine.is_empty(), "every demo search falls in its week"
        tables[monday.isoformat()], _ = aggregate(log.queries, config)
    window = combine_weeks(tables, config)
    assert window["searches"].sum() == 5375
    assert window["rank"].to_list() == list(range(1, window.height + 1))
    assert set(window["bucket"]) == {"head", "torso", "tail"}
    assert combine_weeks({}, config).is_empty(), "a window of empty weeks is empty, not an error"

    stray = tmp_path / "log" / "searches-2006-W09.tsv"
    stray.write_text("user_id\tquery\tsearched_at\n1\tred dress\t2006-03-01 10:00:00\n2\tboots\t2006-05-01 10:00:00\n"
                     "3\tshoes\tyesterday\n")
    log = read_week([stray], dt.date(2006, 2, 27))
    assert log.queries["query"].to_list() == ["red dress"]
    assert sorted(log.quarantine["reason"]) == ["searched_at is not a date and time",
                                                "searched_at outside the week of 2006-02-27"]


def test_bad_rows_are_quarantined_with_reasons(tmp_path: Path) -> None:
    log = tmp_path / "log.tsv"
    rows = [b"query\tsearches\tdistinct_users", b"Dresses\t40\t2", b"dresses \t3\t3", b"\t5\t5", b"   \t1\t1",
            b"x" * 300 + b"\t1\t1", b"caf\xe9 shoes\t2\t2", b"black jeans\tmany\t1", b"red dress\t0\t0",
            b"!!!\t4\t4"]
    log.write_bytes(b"\n".join(rows) + b"\n")
    parsed = read_search_log(log)
    reasons = dict(zip(parsed.quarantine["row"].to_list(), parsed.quarantine["reason"].to_list()))
    assert reasons == {3: "empty query", 4: "empty query", 5: "query longer than 200 characters",
                       6: "query is not valid UTF-8", 7: "count is not a whole number", 8: "count is not positive"}
    assert parsed.demand_measure == "distinct_users"
    intents, quarantine = build_intents(parsed, QueryParser.from_vocabulary(
        fashion_vocabulary(), minilm_encoder(), DemandConfig()), DemandConfig())
    dresses = intents.filter(pl.col("intent") == "dresses").row(0, named=True)
    assert dresses["demand"] == 5 and dresses["searches"] == 43, "distinct users, not raw counts, and variants merge"
    assert sorted(dresses["variants"]) == ["Dresses", "dresses "]
    assert quarantine.filter(pl.col("query") == "!!!")["reason"].to_list() == ["query has no words"]
    assert intents.height + quarantine.height == len(rows) - 1 - 1  # the two dress rows became one intent
