"""Which models the attribute stage and the LLM judge use: configuration, not code (the settings'
``PINLANDING_ATTRIBUTE_BACKEND``, ``PINLANDING_LLM``, ... feed the fields)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from resources.llm import LocalLLM
from resources.models import DEFAULT_LLM, LLM_MODELS, gguf_path


class ModelBackends(dg.ConfigurableResource):
    """Configured from the settings' ``models`` part by the code location (``deployment.py``)."""

    model_cache_dir: str = Field(description="Where GGUF files are assembled and checked.")
    attribute_backend: Literal["offline", "vllm", "transformers"] = "offline"
    llm: str = DEFAULT_LLM
    judge_llm: str = DEFAULT_LLM
    llm_threads: int = 2
    llm_slots: int = Field(default=1, description="Sequences one attribute-stage LLM decodes at once (llama.cpp slots).")
    judge_slots: int = Field(default=1, description="Sequences the judge/title LLM decodes at once.")
    vllm_url: str | None = None
    vllm_model: str | None = None
    vllm_api_key: str = "EMPTY"
    vlm_checkpoint: str | None = None

    def attribute_spec(self, threads: int | None = None) -> dict[str, Any]:
        """A plain, picklable description from which each Ray actor builds its own backend.

        The GGUF file is assembled and hash-checked here, once, before any actor starts.
        """
        if self.attribute_backend == "offline":
            return {"backend": "offline", "gguf": str(gguf_path(self.llm, Path(self.model_cache_dir))),
                    "threads": threads or self.llm_threads,
                    "slots": self.llm_slots}
        if self.attribute_backend == "vllm":
            if not (self.vllm_url and self.vllm_model):
                raise ValueError("attribute_backend=vllm needs PINLANDING_VLLM_URL and PINLANDING_VLLM_MODEL")
            return {"backend": "vllm", "url": self.vllm_url, "model": self.vllm_model, "api_key": self.vllm_api_key}
        if not self.vlm_checkpoint:
            raise ValueError("attribute_backend=transformers needs PINLANDING_VLM_CHECKPOINT (a local checkpoint dir)")
        return {"backend": "transformers", "checkpoint": self.vlm_checkpoint}

    def judge(self):
        if self.judge_llm not in LLM_MODELS:
            raise ValueError(f"unknown judge LLM {self.judge_llm!r}: choose one of {sorted(LLM_MODELS)}")
        return LocalLLM(gguf_path(self.judge_llm, Path(self.model_cache_dir)), threads=self.llm_threads, slots=self.judge_slots)
