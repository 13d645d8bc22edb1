"""Search demand: a search log turned into intents parsed onto the curated vocabulary.

    read (query + count table, or one row per search) -> quarantine what cannot be trusted (empty,
    huge, non-UTF-8, bad counts) -> normalise -> aggregate demand (distinct users when the log has
    them: a few heavy users inflate raw counts) -> head / torso / tail by cumulative demand ->
    parse into attribute slots (exact phrase/alias n-grams, then MiniLM similarity for what is left;
    the unparsed remainder is kept) -> group near-duplicate intents (same slots, same remainder).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pinlanding_assets.facets import (
    EXCLUSIVE_FACETS,
    NAME_ORDER,
    kept_vocabulary,
    normalise_query,
    normalise_value,
    vocabulary_lookup,
)
from resources.files import written_whole
from resources.models import MINILM_DIM

MAX_QUERY_CHARS = 200
STOPWORDS = {"a", "an", "and", "the", "for", "of", "with", "in", "on", "to", "&", "s", "by", "or"}
QUARANTINE_SCHEMA = {"row": pl.Int64, "query": pl.Utf8, "reason": pl.Utf8}


class SearchLogError(ValueError):
    """The search log cannot be read as a search log at all (missing file or query column)."""


@dataclass(frozen=True)
class DemandConfig:
    head_share: float = 0.3
    torso_share: float = 0.7
    embedding_similarity: float = 0.82
    max_ngram: int = 3


@dataclass
class SearchLog:
    queries: pl.DataFrame  # query, searches, demand, first_seen, last_seen (one row per raw query text)
    quarantine: pl.DataFrame
    demand_measure: str  # which column demand came from


def _read_table(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise SearchLogError(f"search log not found: {path}")
    if path.suffix == ".parquet":
        return pl.read_parquet(path).with_columns(pl.all().cast(pl.Utf8))
    separator = "\t" if path.suffix in {".tsv", ".tab"} else ","
    return pl.read_csv(path, separator=separator, infer_schema_length=0, encoding="utf8-lossy",
                       quote_char=None if separator == "\t" else '"', truncate_ragged_lines=True)


def read_search_log(path: Path, week: dt.date | None = None) -> SearchLog:
    """Any table with a ``query`` column; counts from ``distinct_users`` > ``count``/``searches`` > rows.

    With ``week`` (its Monday), rows whose ``searched_at`` is not a date in that week are quarantined."""
    table = _read_table(path).with_row_index("row", offset=1)
    if "query" not in table.columns:
        raise SearchLogError(f"{path} has no 'query' column (columns: {', '.join(table.columns[1:])})")
    count_column = next((c for c in ("count", "searches") if c in table.columns), None)
    users = "distinct_users" if "distinct_users" in table.columns else None
    per_search = count_column is None and users is None
    columns = [pl.col("row").cast(pl.Int64), pl.col("query").fill_null("")]
    searches = pl.col(count_column).str.strip_chars().cast(pl.Int64, strict=False) if count_column else pl.lit(1, pl.Int64)
    columns.append(searches.alias("searches"))
    columns.append((pl.col(users).str.strip_chars().cast(pl.Int64, strict=False) if users else searches).alias("users"))
    for name in ("first_seen", "last_seen"):
        columns.append(pl.col(name) if name in table.columns else pl.lit(None, pl.Utf8).alias(name))
    if per_search and "user_id" in table.columns:
        columns.append(pl.col("user_id"))
    if week is not None and "searched_at" in table.columns:
        columns.append(pl.col("searched_at").str.strip_chars().str.to_datetime(strict=False).alias("searched_at"))
    rows = table.select(columns)
    reason = pl.when(pl.lit(False)).then(pl.lit(None, pl.Utf8))
    if "searched_at" in rows.columns:
        start = dt.datetime.combine(week, dt.time())
        reason = reason.when(pl.col("searched_at").is_null()).then(pl.lit("searched_at is not a date and time")).when(
            (pl.col("searched_at") < start) | (pl.col("searched_at") >= start + dt.timedelta(days=7))).then(
            pl.lit(f"searched_at outside the week of {week.isoformat()}"))
    reason = (
        reason.when(pl.col("query").str.contains("\ufffd", literal=True)).then(pl.lit("query is not valid UTF-8"))
        .when(pl.col("query").str.strip_chars() == "").then(pl.lit("empty query"))
        .when(pl.col("query").str.len_chars() > MAX_QUERY_CHARS).then(pl.lit(f"query longer than {MAX_QUERY_CHARS} characters"))
        .when(pl.col("searches").is_null() | pl.col("users").is_null()).then(pl.lit("count is not a whole number"))
        .when((pl.col("searches") <= 0) | (pl.col("users") <= 0)).then(pl.lit("count is not positive"))
    )
    rows = rows.with_columns(reason.alias("reason"))
    quarantine = rows.filter(pl.col("reason").is_not_null()).select(
        "row", pl.col("query").str.slice(0, MAX_QUERY_CHARS), "reason").cast(QUARANTINE_SCHEMA)
    good = rows.filter(pl.col("reason").is_null())
    if per_search and "user_id" in good.columns:
        good = good.group_by("query").agg(
            pl.len().cast(pl.Int64).alias("searches"), pl.col("user_id").n_unique().cast(pl.Int64).alias("users"),
            pl.lit(None, pl.Utf8).alias("first_seen"), pl.lit(None, pl.Utf8).alias("last_seen"))
    measure = "distinct_users" if users or (per_search and "user_id" in table.columns) else "searches"
    queries = good.select("query", "searches", pl.col("users").alias("demand"), "first_seen", "last_seen")
    return SearchLog(queries=queries, quarantine=quarantine, demand_measure=measure)


def aggregate(queries: pl.DataFrame, config: DemandConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(one row per normalised query ranked by demand, ties by text, bucketed head/torso/tail; queries with no words)."""
    normalised = queries.with_columns(pl.col("query").map_elements(normalise_query, return_dtype=pl.Utf8).alias("intent"))
    unusable = normalised.filter(pl.col("intent") == "")
    merged = normalised.filter(pl.col("intent") != "").group_by("intent").agg(
        pl.col("demand").sum(), pl.col("searches").sum(), pl.col("first_seen").min(), pl.col("last_seen").max(),
        pl.col("query").unique().sort().alias("variants"),
    )
    return rank_demand(merged, config), unusable


def combine_weeks(weeks: dict[str, pl.DataFrame], config: DemandConfig) -> pl.DataFrame:
    """The weekly intents of a window summed into one ranked table. Demand is distinct users per
    week, summed: a user who searches the same thing in three weeks counts three times, one who
    searches it ten times in one week counts once."""
    frames = [frame.select("intent", "demand", "searches", "first_seen", "last_seen", "variants")
              .with_columns(pl.lit(week).alias("week")) for week, frame in sorted(weeks.items()) if frame.height]
    if not frames:
        empty = pl.DataFrame(schema={"intent": pl.Utf8, "demand": pl.Int64, "searches": pl.Int64, "first_seen": pl.Utf8,
                                     "last_seen": pl.Utf8, "variants": pl.List(pl.Utf8), "weeks": pl.List(pl.Utf8)})
        return rank_demand(empty, config)
    merged = pl.concat(frames, how="diagonal_relaxed").group_by("intent").agg(
        pl.col("demand").sum(), pl.col("searches").sum(), pl.col("first_seen").min(), pl.col("last_seen").max(),
        pl.col("variants").flatten().unique().sort(), pl.col("week").unique().sort().alias("weeks"))
    return rank_demand(merged, config)


def rank_demand(merged: pl.DataFrame, config: DemandConfig) -> pl.DataFrame:
    """Rank by demand (ties by text) and bucket head / torso / tail by cumulative demand share."""
    merged = merged.sort(["demand", "intent"], descending=[True, False])
    total = merged["demand"].sum() or 1
    cumulative = (merged["demand"].cum_sum() - merged["demand"]) / total  # demand share before this query
    bucket = pl.when(cumulative < config.head_share).then(pl.lit("head")).when(
        cumulative < config.torso_share).then(pl.lit("torso")).otherwise(pl.lit("tail"))
    return merged.with_columns(pl.int_range(1, merged.height + 1, dtype=pl.Int64).alias("rank"),
                               (pl.col("demand") / total).alias("demand_share"), bucket.alias("bucket"))


@dataclass
class QueryParser:
    """Greedy longest n-gram match onto vocabulary phrases and aliases, then MiniLM for leftover words."""

    lookup: dict[tuple[str, str], str]
    facets: dict[str, str]
    phrases: list[str]
    attribute_ids: list[str]
    phrase_vectors: np.ndarray
    encode: Callable[[list[str]], np.ndarray]
    config: DemandConfig

    @classmethod
    def from_vocabulary(cls, vocabulary: pl.DataFrame, encode: Callable[[list[str]], np.ndarray],
                        config: DemandConfig) -> QueryParser:
        kept = kept_vocabulary(vocabulary).sort("attribute_id")
        return cls(vocabulary_lookup(vocabulary), dict(zip(kept["attribute_id"], kept["facet"])),
                   kept["phrase"].to_list(), kept["attribute_id"].to_list(),
                   encode(kept["phrase"].to_list()) if kept.height else np.zeros((0, MINILM_DIM), np.float32), encode, config)

    def _exact(self, text: str) -> str | None:
        for facet in NAME_ORDER:
            found = self.lookup.get((facet, normalise_value(facet, text)))
            if found:
                return found
        return None

    def _taken(self, attribute: str, slots: list[tuple[str, str]]) -> bool:
        """Already in the slots, or its exclusive facet is filled: in "flat shoes" the first, more
        specific product type wins and "shoes" adds nothing."""
        facet = self.facets[attribute]
        return any(a == attribute or (facet in EXCLUSIVE_FACETS and self.facets[a] == facet) for a, _ in slots)

    def parse_many(self, intents: list[str]) -> list[dict]:
        """Per intent: attribute ids, how each matched, and the remainder (words no slot explains)."""
        parsed, leftovers = [], []
        for intent in intents:
            words, slots, rest = intent.split(" "), [], []
            i = 0
            while i < len(words):
                for n in range(min(self.config.max_ngram, len(words) - i), 0, -1):
                    found = self._exact(" ".join(words[i:i + n]))
                    if found:
                        if not self._taken(found, slots):
                            slots.append((found, "exact"))
                        i += n
                        break
                else:
                    rest.append(words[i])
                    i += 1
            rest = [w for w in rest if w not in STOPWORDS]
            parsed.append((slots, rest))
            leftovers.extend(rest)
        unique = sorted(set(leftovers))
        nearest: dict[str, str] = {}
        if unique and self.phrase_vectors.shape[0]:
            similarity = self.encode(unique) @ self.phrase_vectors.T
            for word, row in zip(unique, similarity):
                if row.max() >= self.config.embedding_similarity:
                    nearest[word] = self.attribute_ids[int(row.argmax())]
        results = []
        for slots, rest in parsed:
            remainder = []
            for word in rest:
                if word in nearest:
                    if not self._taken(nearest[word], slots):
                        slots.append((nearest[word], "embedding"))
                else:
                    remainder.append(word)
            slots.sort(key=lambda s: (NAME_ORDER.index(self.facets[s[0]]), s[0]))
            results.append({
                "attribute_ids": [a for a, _ in slots], "facets": [self.facets[a] for a, _ in slots],
                "match_methods": [m for _, m in slots], "remainder": " ".join(remainder),
            })
        return results


def group_key(attribute_ids: list[str], remainder: str) -> str:
    """Near-duplicates share slots and remainder words (order and plurals aside)."""
    words = sorted(normalise_value("category", w) for w in remainder.split())
    return "|".join(sorted(attribute_ids)) + "#" + " ".join(words)


def build_intents(log: SearchLog, parser: QueryParser, config: DemandConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(intents, quarantine): every raw query ends in one of the two."""
    ranked, unusable = aggregate(log.queries, config)
    return parse_intents(ranked, parser), search_quarantine(log, unusable)


def search_quarantine(log: SearchLog, unusable: pl.DataFrame) -> pl.DataFrame:
    """Rows the reader refused plus queries that normalise to nothing, each with its reason."""
    return pl.concat([
        log.quarantine,
        unusable.select(pl.lit(None, pl.Int64).alias("row"), "query", pl.lit("query has no words").alias("reason")),
    ]).cast(QUARANTINE_SCHEMA)


def parse_intents(ranked: pl.DataFrame, parser: QueryParser) -> pl.DataFrame:
    """Ranked intents with attribute slots, remainder and near-duplicate groups on ``parser``'s vocabulary."""
    slots = parser.parse_many(ranked["intent"].to_list())
    parsed = ranked.with_columns(
        pl.Series("attribute_ids", [s["attribute_ids"] for s in slots], pl.List(pl.Utf8)),
        pl.Series("facets", [s["facets"] for s in slots], pl.List(pl.Utf8)),
        pl.Series("match_methods", [s["match_methods"] for s in slots], pl.List(pl.Utf8)),
        pl.Series("remainder", [s["remainder"] for s in slots], pl.Utf8),
    ).with_columns(
        (pl.col("attribute_ids").list.len() > 0).alias("parsed"),
        ((pl.col("attribute_ids").list.len() > 0) & (pl.col("remainder") == "")).alias("fully_parsed"),
        pl.struct("attribute_ids", "remainder").map_elements(
            lambda r: group_key(r["attribute_ids"], r["remainder"]), return_dtype=pl.Utf8).alias("group_key"),
    )
    leaders = parsed.sort(["demand", "intent"], descending=[True, False]).group_by("group_key", maintain_order=True).agg(
        pl.col("intent").first().alias("group_intent"), pl.col("demand").sum().alias("group_demand"))
    return parsed.join(leaders, on="group_key", how="left").with_columns(
        (pl.col("intent") == pl.col("group_intent")).alias("is_group_leader")).sort("rank")


def read_week(files: list[Path], week: dt.date) -> SearchLog:
    """Every log file of one week read as one log (rows outside the week quarantined)."""
    logs = [read_search_log(path, week) for path in files]
    if not logs:
        return SearchLog(pl.DataFrame(schema={"query": pl.Utf8, "searches": pl.Int64, "demand": pl.Int64,
                                              "first_seen": pl.Utf8, "last_seen": pl.Utf8}),
                         pl.DataFrame(schema=QUARANTINE_SCHEMA), "distinct_users")
    measures = {log.demand_measure for log in logs}
    return SearchLog(pl.concat([log.queries for log in logs], how="diagonal_relaxed"),
                     pl.concat([log.quarantine for log in logs]).cast(QUARANTINE_SCHEMA),
                     measures.pop() if len(measures) == 1 else "mixed")


def split_search_log(source: Path, log_dir: Path, prefix: str = "searches") -> list[Path]:
    """Split a per-search log (user_id, query, searched_at) into one file per ISO week, lines verbatim
    (``<prefix>-2006-W10.tsv``); rows without a readable date join the first week, whose reader then
    quarantines them with the reason. Existing week files are left alone."""
    lines = source.read_bytes().splitlines(keepends=True)
    header, rows = lines[0], [line for line in lines[1:] if line.strip()]
    columns = header.decode("utf-8", "replace").rstrip("\r\n").split("\t")
    if "searched_at" not in columns:
        raise SearchLogError(f"{source} has no searched_at column: it is not a per-search log")
    at = columns.index("searched_at")
    by_week: dict[tuple[int, int], list[bytes]] = {}
    undated = []
    for line in rows:
        fields = line.decode("utf-8", "replace").rstrip("\r\n").split("\t")
        try:
            when = dt.datetime.fromisoformat(fields[at].strip())
        except (IndexError, ValueError):
            undated.append(line)
            continue
        year, week, _ = when.isocalendar()
        by_week.setdefault((year, week), []).append(line)
    if undated and by_week:
        by_week[min(by_week)].extend(undated)
    log_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for (year, week), part in sorted(by_week.items()):
        target = log_dir / f"{prefix}-{year}-W{week:02d}.tsv"
        if not target.exists():
            with written_whole(target) as staging:
                staging.write_bytes(header + b"".join(part))
        written.append(target)
    return written
