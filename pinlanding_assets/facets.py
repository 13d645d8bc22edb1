"""The facet taxonomy, written once: which facets exist, their orders by purpose, how their phrases are
normalised and pluralised, the kept vocabulary and its lookup, and which ground-truth label column
judges which facet. Every domain reads these from here.
"""

from __future__ import annotations

import re
import unicodedata

import polars as pl

# The facets, in the order the attribute stage's answer lists them.
FACETS = ("category", "colour", "material", "pattern", "style", "occasion", "gender")
# Facets a product has exactly one of: assigned top-1, judged top-1.
EXCLUSIVE_FACETS = frozenset({"category", "gender"})
# Facets whose answers may hold several phrases (comma-separated).
MULTI_VALUED = frozenset({"colour"})
# A "casual" look is worn on a "casual" occasion: both facets keep such a phrase.
SHARED_FACETS = ("style", "occasion")
# Facets whose phrases are nouns: normalised to the singular.
SINGULAR_FACETS = frozenset({"category", "material", "pattern"})
# Facet names a model may answer with instead of ours.
FACET_ALIASES = {"color": "colour", "colours": "colour", "colors": "colour", "type": "category",
                 "product_type": "category"}

# Word order of a name or an intent: "women's black leather casual ankle boots".
NAME_ORDER = ("gender", "colour", "material", "pattern", "style", "occasion", "category")
# Order of a page's facet sections, with their headings.
DISPLAY_ORDER = ("category", "gender", "colour", "pattern", "material", "style", "occasion")
FACET_HEADINGS = {"category": "Category", "colour": "Colour", "gender": "Gender", "material": "Material",
          "pattern": "Pattern", "style": "Style", "occasion": "Occasion"}
# What the LLM judge is asked a facet's phrase is.
JUDGE_WORDING = {"category": "product type", "colour": "colour", "gender": "gender or age group"}

# Ground truth: the Fashion Product Images label column that judges each facet (evaluation only,
# never model input), and how similar a label value and a phrase must be to count as the same.
GROUND_TRUTH = {"category": "articleType", "colour": "baseColour", "occasion": "usage", "gender": "gender"}
COVERAGE_SIMILARITY = 0.8

PLURAL_ONLY = {
    "jeans", "shorts", "trousers", "pants", "leggings", "sunglasses", "glasses", "tights", "capris", "briefs",
    "boxers", "trunks", "pyjamas", "pajamas", "flip flops", "heels", "flats", "jeggings", "joggers", "track pants",
    "innerwear vests", "dungarees", "overalls", "clothes", "accessories", "loafers", "sneakers", "shoes", "boots",
}
SYNONYMS = {
    "tee": "t-shirt", "tshirt": "t-shirt", "t shirt": "t-shirt", "tee shirt": "t-shirt", "tees": "t-shirt",
    "gray": "grey", "navy": "navy blue", "mens": "men", "men's": "men", "man": "men", "male": "men",
    "womens": "women", "women's": "women", "woman": "women", "female": "women", "ladies": "women",
    "boy": "boys", "girl": "girls", "kids": "unisex kids", "sport": "sports", "sporty": "sports",
    "slipper": "flip flops", "slippers": "flip flops", "flip flop": "flip flops", "formal shoe": "formal shoes",
    "casual shoe": "casual shoes", "sports shoe": "sports shoes", "running shoe": "sports shoes",
    "check": "checked", "checks": "checked", "stripes": "striped", "stripe": "striped", "print": "printed",
    "wristwatch": "watch", "hand bag": "handbag", "jean": "jeans", "kurtis": "kurti", "trunk": "trunks",
    "scarves": "scarf", "scarve": "scarf", "short": "shorts", "legging": "leggings", "sunglass": "sunglasses",
    "heel": "heels", "flat": "flats", "brief": "briefs", "pant": "pants", "track pant": "track pants",
}
KEEP = "keep"  # the curation decision of a vocabulary entry in use


def singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def plural(noun: str) -> str:
    """English plural of a category phrase's last word; plural-only nouns stay as they are."""
    if noun in PLURAL_ONLY or noun.endswith(("s", "wear", "clothing")) and not noun.endswith("ss"):
        return noun
    head, _, last = noun.rpartition(" ")
    if re.search(r"(s|x|ch|sh)$", last):
        last += "es"
    elif re.search(r"[^aeiou]y$", last):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}".strip()


def clean_phrase(value: object) -> str:
    """A model's raw answer field as a phrase: whitespace collapsed, outer punctuation and quotes off,
    lower case (what the attribute stage keeps)."""
    return re.sub(r"\s+", " ", str(value)).strip().strip(".,;:!\"'").lower()


def normalise_value(facet: str, value: str) -> str:
    """A phrase in its vocabulary form: case, whitespace, hyphen spacing, obvious synonyms, plural ->
    singular in noun facets (plural-only nouns kept). Vocabulary, labels and queries meet here."""
    phrase = re.sub(r"\s+", " ", value.lower().replace("_", " ")).strip(" .,-")
    phrase = re.sub(r"\s*-\s*", "-", phrase)
    phrase = SYNONYMS.get(phrase, phrase)
    if facet in SINGULAR_FACETS and phrase not in PLURAL_ONLY and not any(phrase.endswith(p) for p in PLURAL_ONLY):
        words = phrase.split(" ")
        words[-1] = singular(words[-1])
        phrase = SYNONYMS.get(" ".join(words), " ".join(words))
    return phrase


def normalise_query(query: str) -> str:
    """A search query as an intent: NFKC, lower case, punctuation to spaces (apostrophes and inner
    hyphens kept), single spaces."""
    text = unicodedata.normalize("NFKC", query).lower()
    return " ".join(re.findall(r"[^\W_][\w'-]*", text)).replace("'s ", "s ").strip("'- ")


def title_tokens(title: str) -> str:
    """A title as space-delimited words in vocabulary form, for whole-word phrase matching."""
    words = re.findall(r"[a-z0-9][a-z0-9'-]*", title.lower())
    return " " + " ".join(normalise_value("category", w) for w in words) + " "


def kept_vocabulary(vocabulary: pl.DataFrame) -> pl.DataFrame:
    """The entries curation kept, in the vocabulary's own order."""
    return vocabulary.filter(pl.col("decision") == KEEP)


def vocabulary_lookup(vocabulary: pl.DataFrame) -> dict[tuple[str, str], str]:
    """(facet, normalised phrase or alias) -> attribute_id, for kept entries."""
    lookup = {}
    for row in kept_vocabulary(vocabulary).iter_rows(named=True):
        for phrase in [row["phrase"], *(row["aliases"] or [])]:
            lookup[(row["facet"], normalise_value(row["facet"], phrase))] = row["attribute_id"]
    return lookup
