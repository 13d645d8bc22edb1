"""Product types named in the catalog's own titles, so the category vocabulary does not depend on what
a few sampled products happened to be called.

Titles in a fashion catalog end with the product type: "Puma Men Black Sports Shoes", "Mother Earth
Women Pink Trousers". Every title of every drop a release saw is read (not only the labelled sample):

    last word ("trousers") and last two words ("sports shoes") of each title, in vocabulary form
    -> a two-word type counts when its first word is no modifier (a word the attribute stage used for a
       colour, pattern, material or gender, a colour the image evidence names, an audience word, a
       brand word: "black dress" is a colour and a type, not a type; "sports shoes" is one)
    -> a one-word type whose titles are mostly its two-word types ("shoes": sports, casual, formal
       shoes) is covered by them: it is no product type of its own, and leaves with that reason
    -> a two-word type whose one-word head stays a type ("dial watch" under "watch") is an alias of it,
       so no two category phrases nest (a product has one category)

The types become candidate category phrases (one row per product whose title names them, as if the
attribute stage had said so), checked by the frequency filter, clustering and the judge like any
phrase.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from pinlanding_assets.attributes.brands import AUDIENCE_WORDS, Brands
from pinlanding_assets.catalog.image_features import COLOUR_NAMES
from pinlanding_assets.facets import normalise_value

RAW_SCHEMA = {"product_id": pl.Utf8, "facet": pl.Utf8, "value": pl.Utf8}


@dataclass(frozen=True)
class ProductTypes:
    rows: pl.DataFrame  # product_id, facet ("category"), value: one row per product whose title names a type
    types: dict[str, int]  # type phrase -> products whose title names it (aliases counted with their type)
    aliases: dict[str, str]  # two-word type -> the one-word type it is an alias of
    covered: dict[str, str]  # one-word phrase -> why it is no product type of its own


def _words(title: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9'-]*", (title or "").lower())


# Facets whose words qualify a type in a title ("black dress", "printed dress", "leather belt"). Style
# and occasion words are left out on purpose: "sports shoes", "casual shoes", "formal shoes" are types.
MODIFIER_FACETS = ("colour", "pattern", "material", "gender")


def modifier_words(raw: pl.DataFrame, brands: Brands | None, min_products: int = 2) -> set[str]:
    """Words that qualify a product type rather than name one: every colour the image evidence names,
    audience words, brand words, and the words the attribute stage used for a colour, pattern, material
    or gender on at least ``min_products`` products and more often than for anything else (one noisy
    answer calling "formal" a colour does not make "formal shoes" a formal pair of shoes)."""
    words = set(AUDIENCE_WORDS) | (set(brands.words) if brands else set())
    words |= {w for name in COLOUR_NAMES for w in _words(name)}
    as_modifier, otherwise = Counter(), Counter()
    for product_id, facet, value in raw.select("product_id", "facet", "value").unique().iter_rows():
        for word in set(_words(value)):
            (as_modifier if facet in MODIFIER_FACETS else otherwise)[word, product_id] += 1
    modifier_products, other_products = Counter(w for w, _ in as_modifier), Counter(w for w, _ in otherwise)
    return words | {w for w, n in modifier_products.items() if n >= min_products and n > other_products[w]}


def title_product_types(products: pl.DataFrame, modifiers: Iterable[str], min_products: int = 20,
                        cover_share: float = 0.5) -> ProductTypes:
    """products: product_id, title (every product of the release's drops)."""
    modifiers = set(modifiers)
    endings: dict[str, tuple[str, str | None]] = {}
    ones, twos = Counter(), Counter()
    for product_id, title in products.select("product_id", "title").iter_rows():
        words = _words(title)
        if not words or words[-1].isdigit():
            continue
        one = normalise_value("category", words[-1])
        two = None
        if len(words) > 1 and words[-2] not in modifiers and not words[-2].isdigit():
            two = normalise_value("category", f"{words[-2]} {words[-1]}")
            twos[two] += 1
        ones[one] += 1
        endings[product_id] = (one, two)
    two_types = {t for t, n in twos.items() if n >= min_products}
    under: dict[str, int] = defaultdict(int)
    parts: dict[str, set[str]] = defaultdict(set)
    for one, two in endings.values():
        if two in two_types:
            under[one] += 1
            parts[one].add(two)
    covered, one_types = {}, set()
    for one, n in ones.items():
        if under[one] >= cover_share * n and under[one]:
            covered[one] = (f"product type: {under[one]} of the {n} titles ending in \"{one}\" name a more precise "
                            f"type ({', '.join(sorted(parts[one]))})")
        elif n >= min_products:
            one_types.add(one)
    aliases = {t: endings_head(t) for t in two_types if endings_head(t) in one_types}
    rows, types = [], Counter()
    for product_id in sorted(endings):
        one, two = endings[product_id]
        if two in two_types:
            named = aliases.get(two, two)
        elif one in one_types:
            named = one
        else:
            continue
        types[named] += 1
        rows.append({"product_id": product_id, "facet": "category", "value": named})
    return ProductTypes(pl.DataFrame(rows, schema=RAW_SCHEMA), dict(sorted(types.items())), dict(sorted(aliases.items())),
                        dict(sorted(covered.items())))


def endings_head(phrase: str) -> str:
    """The one-word head of a two-word type: "sports shoes" -> "shoes"."""
    return normalise_value("category", phrase.rsplit(" ", 1)[-1])
