"""Brand and shop names found in product titles, so the vocabulary never offers one as a material,
pattern or style ("Lino Belts", "Catwalk Flats").

Titles in a fashion catalog lead with the brand: "Catwalk Women Black Flats", "Lino Perros Men Belt".
A brand is the run of words before the first audience word (men, women, boys...). A word is brand-like
when it opens titles of at least ``min_products`` products and almost never appears after the audience
word (``min_leading_share``): "red" in "Red Tape Men Shoes" stays a colour because most titles use "red"
later on, as a colour.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

AUDIENCE_WORDS = {"men", "mens", "men's", "women", "womens", "women's", "boys", "boy", "girls", "girl", "unisex",
                  "kids", "kid", "infant", "infants", "baby", "ladies"}


@dataclass(frozen=True)
class Brands:
    names: frozenset[str]   # whole brand runs, "lino perros"
    words: frozenset[str]   # brand-like words, "lino", "perros"

    def is_brand(self, phrase: str) -> bool:
        """A phrase is a brand when it is a brand name or made only of brand-like words."""
        words = phrase.lower().split()
        return bool(words) and (phrase.lower() in self.names or all(word in self.words for word in words))


def _words(title: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9'&-]*", title.lower())


def find_brands(titles: Iterable[str | None], min_products: int = 3, min_leading_share: float = 0.9) -> Brands:
    leading, later, names = Counter(), Counter(), Counter()
    for title in titles:
        words = _words(title or "")
        cut = next((i for i, word in enumerate(words) if word in AUDIENCE_WORDS), None)
        if not cut:  # no audience word, or the title opens with it: no brand run to read
            later.update(set(words))
            continue
        leading.update(set(words[:cut]))
        later.update(set(words[cut:]))
        names[" ".join(words[:cut])] += 1
    brand_words = {
        word for word, count in leading.items()
        if count >= min_products and count / (count + later[word]) >= min_leading_share and len(word) > 1 and not word.isdigit()
    }
    brand_names = {name for name, count in names.items() if count >= min_products and set(name.split()) & brand_words}
    return Brands(frozenset(brand_names), frozenset(brand_words))
