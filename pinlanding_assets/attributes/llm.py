"""The local LLM, served in-process by llama.cpp (``xllamacpp``, a prebuilt CPU wheel).

Two calls matter: a chat completion (optionally constrained to a JSON schema) and a yes/no
judgement read from the first token's log-probabilities. Greedy decoding and a fixed seed keep
answers reproducible.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from pinlanding_assets.settings import export_default

YES_TOKENS = ("yes", "Yes", "YES", " yes", " Yes")
NO_TOKENS = ("no", "No", "NO", " no", " No")


class LocalLLM:
    """One llama.cpp model in this process; calls are serialised (one slot)."""

    def __init__(self, model_path: Path, threads: int = 2, context: int = 2048, seed: int = 7) -> None:
        export_default("LLAMA_LOG_VERBOSITY", "0")
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.n_ctx = context
        params.n_parallel = 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.warmup = False
        params.verbosity = -1
        self.model_name = Path(model_path).stem
        self.seed = seed
        self._server = xllamacpp.Server(params)
        self._lock = threading.Lock()

    def _complete(self, request: dict[str, Any]) -> dict[str, Any]:
        request = {"temperature": 0.0, "seed": self.seed, "cache_prompt": True, **request}
        with self._lock:
            response = self._server.handle_chat_completions(request)
        if not isinstance(response, dict) or "choices" not in response:
            raise RuntimeError(f"llama.cpp returned no completion: {str(response)[:300]}")
        return response

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 128, json_schema: dict | None = None) -> str:
        request: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens}
        if json_schema is not None:
            request["response_format"] = {"type": "json_object", "schema": json_schema}
        return self._complete(request)["choices"][0]["message"]["content"] or ""

    def yes_probability(self, messages: list[dict[str, str]]) -> float:
        """P(yes) / (P(yes) + P(no)) over the first answer token's top log-probabilities."""
        response = self._complete({"messages": messages, "max_tokens": 1, "logprobs": True, "top_logprobs": 20})
        top = response["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        yes = sum(math.exp(entry["logprob"]) for entry in top if entry["token"] in YES_TOKENS)
        no = sum(math.exp(entry["logprob"]) for entry in top if entry["token"] in NO_TOKENS)
        return yes / (yes + no) if yes + no > 0 else 0.5
