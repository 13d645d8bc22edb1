"""Collection titles written by the local LLM, checked against the topic before they are used.

The LLM gets the attributes as a JSON data block and answers in a JSON schema. A title that drops
or invents an attribute word, or is too long, is replaced by a template title, and the reason is
kept: the page name must say exactly what the feed holds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from pinlanding_assets.facets import SYNONYMS, plural, singular

MAX_TITLE_CHARS = 60
TITLE_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string", "maxLength": MAX_TITLE_CHARS}},
    "required": ["title"],
}
GENDER_WORDS = {"men": "Men's", "women": "Women's", "boys": "Boys'", "girls": "Girls'", "unisex": "Unisex",
                "unisex kids": "Kids'"}
LINKING_WORDS = {"for", "and", "with", "the", "in", "s"}
SYSTEM = ("You name shopping pages for an online fashion store. Given the attributes of the products on a "
          "page, write the page title people would search for: 1 to 6 words, title case, the product type "
          "in the plural, every attribute mentioned and nothing else added (no brand, no adjectives such as "
          "'stylish'). Answer with JSON.")
EXAMPLE_USER = json.dumps({"colour": "black", "material": "leather", "category": "ankle boot"})
EXAMPLE_ANSWER = json.dumps({"title": "Black Leather Ankle Boots"})


def slug_for(phrases: list[str]) -> str:
    """A file-name-safe, stable slug: lower-case ASCII letters, digits and single hyphens."""
    text = "-".join(phrases).lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", text)).strip("-") or "collection"


def template_title(attributes: list[tuple[str, str]]) -> str:
    """(facet, phrase) in facet order -> "Women's Black Striped Dresses"."""
    words, gender = [], ""
    for facet, phrase in attributes:
        if facet == "gender":
            gender = GENDER_WORDS.get(phrase, phrase.title())
        elif facet == "category":
            words.append(plural(phrase))
        else:
            words.append(phrase)
    return " ".join(([gender] if gender else []) + [w.title() if w.islower() else w for w in words])


def _words(text: str) -> set[str]:
    tokens = re.findall(r"[a-z0-9]+(?:'s|s')?", text.lower().replace("-", " "))
    out = set()
    for token in tokens:
        token = SYNONYMS.get(token, token).replace("'s", "").rstrip("'")
        out |= {token, singular(token)}
    return out


def title_problem(title: str, attributes: list[tuple[str, str]]) -> str | None:
    """Why the LLM's title cannot be used, or None."""
    if not title or not title.strip():
        return "empty title"
    if len(title) > MAX_TITLE_CHARS or "\n" in title:
        return "title too long"
    words = _words(title)
    missing = [phrase for _, phrase in attributes
               if not all({w, singular(w)} & words for w in re.findall(r"[a-z0-9]+", phrase.replace("-", " ")))]
    if missing:
        return f"title leaves out {', '.join(missing)}"
    allowed = set().union(*(_words(phrase) for _, phrase in attributes)) | LINKING_WORDS
    added = sorted(w for w in _words(title) - allowed if singular(w) not in allowed)
    if added:
        return f"title adds {', '.join(added)}"
    return None


def title_messages(attributes: list[tuple[str, str]]) -> list[dict[str, str]]:
    data = json.dumps({facet: phrase for facet, phrase in attributes})
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": EXAMPLE_USER},
        {"role": "assistant", "content": EXAMPLE_ANSWER},
        {"role": "user", "content": data},
    ]


DEFERRED = "deferred: the LLM title comes on a later publish (this publish's LLM calls are spent)"


def write_title(attributes: list[tuple[str, str]], chat: Callable[..., str | None]) -> tuple[str, str, str | None]:
    """(title, source, reason): the LLM's title when it passes the checks, else the template's (also
    when the chat defers the LLM call: it answers None)."""
    raw = chat(title_messages(attributes), max_tokens=32, json_schema=TITLE_SCHEMA)
    if raw is None:
        return template_title(attributes), "template", DEFERRED
    try:
        title = " ".join(str(json.loads(raw).get("title", "")).split())
    except (json.JSONDecodeError, AttributeError):
        return template_title(attributes), "template", "LLM answer was not JSON"
    problem = title_problem(title, attributes)
    if problem:
        return template_title(attributes), "template", problem
    return _plural_category(title, attributes), "llm", None


def _plural_category(title: str, attributes: list[tuple[str, str]]) -> str:
    """Small models often leave the product type singular ("Black Dress"): a page lists many."""
    for facet, phrase in attributes:
        many = plural(phrase)
        if facet == "category" and many != phrase and title.lower().endswith(phrase):
            return title[: len(title) - len(phrase)] + many.title()
    return title
