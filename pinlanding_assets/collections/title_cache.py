"""Collection titles are kept across publishes: an unchanged collection (same attributes, same title
model) keeps its title, so a publish after a small drop makes few LLM calls.

A publish makes at most ``max_calls`` LLM calls: past them a miss answers None (the caller uses a
template title now) and the LLM title comes on a later publish, so a publish with hundreds of new
collections never waits on hundreds of LLM calls.

The cache maps (model, prompt) to the model's raw answer; the prompt is built from the collection's
attributes only, so the key is exactly "these attributes, this model". Answers are stored raw and
checked again on every use, so a stricter checker never lets an old title through.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from resources.files import written_whole

SCHEMA = {"key": pl.Utf8, "model": pl.Utf8, "prompt": pl.Utf8, "answer": pl.Utf8}


class CachedChat:
    """A chat callable in front of an LLM that is loaded only on the first cache miss."""

    def __init__(self, path: Path, model_name: str, load: Callable[[], Any], max_calls: int | None = None) -> None:
        self.path, self.model_name, self._load, self._llm = path, model_name, load, None
        self.max_calls = max_calls
        self._entries: dict[str, dict[str, str]] = {}
        if path.is_file():
            for row in pl.read_parquet(path).iter_rows(named=True):
                self._entries[row["key"]] = row
        self.hits = self.calls = self.deferred = 0

    def _key(self, messages: list[dict[str, str]], kwargs: dict[str, Any]) -> tuple[str, str]:
        prompt = json.dumps({"messages": messages, **kwargs}, sort_keys=True)
        return hashlib.sha256(f"{self.model_name}\n{prompt}".encode()).hexdigest(), prompt

    def __call__(self, messages: list[dict[str, str]], **kwargs: Any) -> str | None:
        key, prompt = self._key(messages, kwargs)
        if key in self._entries:
            self.hits += 1
            return self._entries[key]["answer"]
        if self.max_calls is not None and self.calls >= self.max_calls:
            self.deferred += 1
            return None
        if self._llm is None:
            self._llm = self._load()
        self.calls += 1
        answer = self._llm.chat(messages, **kwargs)
        self._entries[key] = {"key": key, "model": self.model_name, "prompt": prompt, "answer": answer}
        return answer

    def save(self) -> None:
        """Written whole through a temporary file, so a crash never leaves half a cache."""
        with written_whole(self.path) as staging:
            pl.DataFrame(sorted(self._entries.values(), key=lambda e: e["key"]), schema=SCHEMA).write_parquet(staging)
