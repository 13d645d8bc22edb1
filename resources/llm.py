"""The local LLM, served in-process by llama.cpp (``xllamacpp``, a prebuilt CPU wheel).

Two calls matter: a chat completion (optionally constrained to a JSON schema or a GBNF grammar) and a
yes/no judgement read from the first token's log-probabilities. Greedy decoding and a fixed seed keep
answers reproducible.

The server decodes up to ``slots`` sequences at once (llama.cpp continuous batching); ``map`` submits
requests concurrently so the slots fill. Measured on 2 CPU cores (``benchmarks/attribute_stage.py``),
decoding is compute-bound and extra slots add little, while the numerics of a batched step depend on
which sequences share it, so answers are only bit-for-bit reproducible with one slot: the default
(the ``llm_slots`` of ``ModelBackends``) is 1; raise it on machines with more cores or a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

YES_TOKENS = ("yes", "Yes", "YES", " yes", " Yes")
NO_TOKENS = ("no", "No", "NO", " no", " No")
SLOT_CONTEXT = 1024  # tokens per slot: the longest prompt (instructions + examples + one product) is ~600

T = TypeVar("T")
R = TypeVar("R")


def map_concurrently(function: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """``function`` over ``items`` with up to ``workers`` calls in flight; results in input order."""
    items = list(items)
    if workers <= 1 or len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm-request") as pool:
        return list(pool.map(function, items))


class LocalLLM:
    """One llama.cpp model in this process serving ``slots`` sequences concurrently."""

    def __init__(self, model_path: Path, threads: int = 2, slots: int = 1, seed: int = 7) -> None:
        import xllamacpp

        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.n_ctx = SLOT_CONTEXT * slots  # llama.cpp splits the context evenly between the slots
        params.n_parallel = slots
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.warmup = False
        params.verbosity = -1
        self.model_name = Path(model_path).stem
        self.seed = seed
        self.slots = slots
        self._server = xllamacpp.Server(params)

    def _complete(self, request: dict[str, Any]) -> dict[str, Any]:
        request = {"temperature": 0.0, "seed": self.seed, "cache_prompt": True, **request}
        response = self._server.handle_chat_completions(request)
        if not isinstance(response, dict) or "choices" not in response:
            raise RuntimeError(f"llama.cpp returned no completion: {str(response)[:300]}")
        return response

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``function`` over ``items`` with one request in flight per slot; results in input order."""
        return map_concurrently(function, items, self.slots)

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 128, json_schema: dict | None = None,
             grammar: str | None = None) -> str:
        request: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens}
        if json_schema is not None:
            request["response_format"] = {"type": "json_object", "schema": json_schema}
        if grammar is not None:
            request["grammar"] = grammar
        return self._complete(request)["choices"][0]["message"]["content"] or ""

    def yes_probability(self, messages: list[dict[str, str]]) -> float:
        """P(yes) / (P(yes) + P(no)) over the first answer token's top log-probabilities."""
        response = self._complete({"messages": messages, "max_tokens": 1, "logprobs": True, "top_logprobs": 20})
        top = response["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        yes = sum(math.exp(entry["logprob"]) for entry in top if entry["token"] in YES_TOKENS)
        no = sum(math.exp(entry["logprob"]) for entry in top if entry["token"] in NO_TOKENS)
        return yes / (yes + no) if yes + no > 0 else 0.5

    def yes_probabilities(self, questions: list[list[dict[str, str]]]) -> list[float]:
        return self.map(self.yes_probability, questions)
