"""Merchandising overrides: what a person decides about the feeds, kept in one reviewed TOML file in
the data directory and applied at every feed build, so it survives each publish.

    exclude = ["39386"]                  # never shown on any page

    [collections.black-dress]            # a collection's slug (its page is c/black-dress.html)
    title = "Little Black Dresses"       # rename the page
    pin = { "15970" = 1, "21379" = 2 }   # product -> rank
    boost = ["28540"]                    # ahead of the unboosted products
    bury = ["11290"]                     # after them
    exclude = ["53759"]                  # never on this page

    [collections.formal-jeans]
    block = true                         # never published

A feed shows what it would have shown (plus boosted products from further down, less exclusions, whose
places go to the next products), boosted ones first, then the rest, then buried ones (and, by default,
products out of stock) at the bottom of the page, each group in relevance order; pinned products then
take their ranks. Every feed row records what moved it (``override``). Names of collections or products
the build does not know are reported, never silently ignored.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_TITLE_CHARS = 120


class OverridesError(ValueError):
    """The overrides file cannot be read or does not follow the schema."""


class CollectionOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=MAX_TITLE_CHARS)
    block: bool = False
    pin: dict[str, int] = Field(default_factory=dict)
    boost: list[str] = Field(default_factory=list)
    bury: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class Overrides(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exclude: list[str] = Field(default_factory=list)
    collections: dict[str, CollectionOverride] = Field(default_factory=dict)


def fingerprint(path: Path) -> str:
    """What the sensor reports: the file's SHA-256, or "absent"."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"


def read_overrides(path: Path) -> Overrides:
    """The file's overrides; none when it does not exist. A file that is not valid TOML or breaks the
    schema fails with where and why (a publish must not quietly ignore a merchandiser's decision)."""
    if not path.is_file():
        return Overrides()
    try:
        overrides = Overrides.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise OverridesError(f"{path} is not valid TOML: {error}") from error
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise OverridesError(f"{path} does not follow the overrides schema: {problems}") from error
    for slug, override in overrides.collections.items():
        bad = {p: r for p, r in override.pin.items() if r < 1}
        if bad:
            raise OverridesError(f"{path}: collections.{slug}.pin ranks start at 1 (got {bad})")
    return overrides


@dataclass(frozen=True)
class Merchandising:
    """What a feed build needs to apply the overrides."""

    overrides: Overrides
    known_products: frozenset[str]  # the catalog's ids: a pin may bring in a product the feed did not have
    unavailable: frozenset[str] = frozenset()  # out of stock or discontinued
    bury_unavailable: bool = True


def accepted_titles(overrides: Overrides, collections: pl.DataFrame) -> tuple[dict[str, str], list[str]]:
    """(collection -> new title, refusals): a rename that would give two pages one title is refused."""
    titles = dict(zip(collections["collection_id"], collections["title"]))
    renamed, refused = {}, []
    for slug, override in sorted(overrides.collections.items()):
        if slug not in titles or override.title is None:
            continue
        taken = [o for o, t in titles.items() if o != slug and t.lower() == override.title.lower()]
        taken += [o for o, t in renamed.items() if t.lower() == override.title.lower()]
        if taken:
            refused.append(f"collections.{slug}: title {override.title!r} is already {taken[0]}'s; not renamed")
        else:
            renamed[slug] = override.title
    return renamed, refused


def override_problems(overrides: Overrides, collections: pl.DataFrame, known_products: set[str] | frozenset[str]) -> list[str]:
    """Every override naming a collection or product this build does not know, and every refused rename."""
    slugs = set(collections["collection_id"])
    problems = [f"exclude: unknown product {p}" for p in overrides.exclude if p not in known_products]
    for slug, override in sorted(overrides.collections.items()):
        if slug not in slugs:
            problems.append(f"collections.{slug}: no such collection in this release")
            continue
        named = [*override.pin, *override.boost, *override.bury, *override.exclude]
        problems += [f"collections.{slug}: unknown product {p}" for p in named if p not in known_products]
    return problems + accepted_titles(overrides, collections)[1]


def blocked_collections(overrides: Overrides) -> set[str]:
    return {slug for slug, override in overrides.collections.items() if override.block}


def apply_overrides(feeds: pl.DataFrame, merchandising: Merchandising, max_feed_size: int) -> pl.DataFrame:
    """``feeds``: ranked candidates (anchor, collection_id, rank, product_id, relevance), possibly longer
    than ``max_feed_size``; returns each feed re-ranked, cut to ``max_feed_size``, with ``override``.
    A collection with no candidates gets no feed, pins or not (its products do not carry its attributes)."""
    overrides = merchandising.overrides
    unavailable = set(merchandising.unavailable) if merchandising.bury_unavailable else set()
    rows = []
    for (slug,), frame in sorted(feeds.sort(["collection_id", "rank"]).partition_by(
            "collection_id", as_dict=True, maintain_order=True).items()):
        rows += _one_feed(slug, frame, overrides.collections.get(slug, CollectionOverride()), set(overrides.exclude),
                          merchandising.known_products, unavailable, max_feed_size)
    schema = {**{c: feeds.schema[c] for c in ("anchor", "collection_id", "rank", "product_id", "relevance")},
              "override": pl.Utf8}
    return pl.DataFrame(rows, schema=schema, orient="row")


def _one_feed(slug: str, frame: pl.DataFrame, override: CollectionOverride, excluded: set[str],
              known: frozenset[str], unavailable: set[str], max_feed_size: int) -> list[tuple]:
    anchor = frame["anchor"][0]
    gone = excluded | set(override.exclude)
    relevance = dict(zip(frame["product_id"], frame["relevance"]))
    pins = {p: r for p, r in override.pin.items() if p in known and p not in gone}
    boost, bury = set(override.boost), set(override.bury)

    def tier(product: str) -> tuple[int, str | None]:
        if product in boost:
            return 0, "boost"
        if product in bury:
            return 2, "bury"
        if product in unavailable:
            return 2, "bury:out_of_stock"
        return 1, None

    base = [p for p in frame["product_id"] if p not in gone and p not in pins]
    room = max(0, max_feed_size - len(pins))
    boosted = [p for p in base if p in boost][:room]
    rest = [p for p in base if p not in boost][:room - len(boosted)]
    ordered = boosted + sorted(rest, key=lambda p: tier(p)[0])  # stable: relevance order within each group
    reasons = {p: tier(p)[1] for p in ordered}
    for product, rank in sorted(pins.items(), key=lambda item: (item[1], item[0])):
        ordered.insert(min(rank, len(ordered) + 1) - 1, product)
        reasons[product] = f"pin:{rank}"
    return [(anchor, slug, rank, product, relevance.get(product), reasons[product])
            for rank, product in enumerate(ordered[:max_feed_size], 1)]
