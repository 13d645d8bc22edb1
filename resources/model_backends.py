"""Which models the attribute stage and the LLM judge use: configuration, not code.

Environment defaults: ``PINLANDING_ATTRIBUTE_BACKEND`` (offline | vllm | transformers),
``PINLANDING_LLM`` (a key of ``resources.models.LLM_MODELS``), ``PINLANDING_LLM_THREADS``,
``PINLANDING_LLM_SLOTS`` / ``PINLANDING_JUDGE_SLOTS``,
``PINLANDING_VLLM_URL`` / ``PINLANDING_VLLM_MODEL``, ``PINLANDING_VLM_CHECKPOINT``.
"""

from __future__ import annotations

from typing import Any, Literal

import dagster as dg
from pydantic import Field

from pinlanding_assets.settings import setting, setting_int
from resources.models import DEFAULT_LLM, LLM_MODELS, gguf_path


class ModelBackends(dg.ConfigurableResource):
    attribute_backend: Literal["offline", "vllm", "transformers"] = Field(
        default_factory=lambda: setting("PINLANDING_ATTRIBUTE_BACKEND")
    )
    llm: str = Field(default_factory=lambda: setting("PINLANDING_LLM") or DEFAULT_LLM)
    judge_llm: str = Field(default_factory=lambda: setting("PINLANDING_JUDGE_LLM") or setting("PINLANDING_LLM") or DEFAULT_LLM)
    llm_threads: int = Field(default_factory=lambda: setting_int("PINLANDING_LLM_THREADS"))
    llm_slots: int = Field(default_factory=lambda: setting_int("PINLANDING_LLM_SLOTS"),
                           description="Sequences one attribute-stage LLM decodes at once (llama.cpp slots).")
    judge_slots: int = Field(default_factory=lambda: setting_int("PINLANDING_JUDGE_SLOTS"),
                             description="Sequences the judge/title LLM decodes at once.")
    vllm_url: str | None = Field(default_factory=lambda: setting("PINLANDING_VLLM_URL"))
    vllm_model: str | None = Field(default_factory=lambda: setting("PINLANDING_VLLM_MODEL"))
    vllm_api_key: str = Field(default_factory=lambda: setting("PINLANDING_VLLM_API_KEY"))
    vlm_checkpoint: str | None = Field(default_factory=lambda: setting("PINLANDING_VLM_CHECKPOINT"))

    def attribute_spec(self, threads: int | None = None) -> dict[str, Any]:
        """A plain, picklable description from which each Ray actor builds its own backend.

        The GGUF file is assembled and hash-checked here, once, before any actor starts.
        """
        if self.attribute_backend == "offline":
            return {"backend": "offline", "gguf": str(gguf_path(self.llm)), "threads": threads or self.llm_threads,
                    "slots": self.llm_slots}
        if self.attribute_backend == "vllm":
            if not (self.vllm_url and self.vllm_model):
                raise ValueError("attribute_backend=vllm needs PINLANDING_VLLM_URL and PINLANDING_VLLM_MODEL")
            return {"backend": "vllm", "url": self.vllm_url, "model": self.vllm_model, "api_key": self.vllm_api_key}
        if not self.vlm_checkpoint:
            raise ValueError("attribute_backend=transformers needs PINLANDING_VLM_CHECKPOINT (a local checkpoint dir)")
        return {"backend": "transformers", "checkpoint": self.vlm_checkpoint}

    def judge(self):
        from pinlanding_assets.attributes.llm import LocalLLM

        if self.judge_llm not in LLM_MODELS:
            raise ValueError(f"unknown judge LLM {self.judge_llm!r}: choose one of {sorted(LLM_MODELS)}")
        return LocalLLM(gguf_path(self.judge_llm), threads=self.llm_threads, slots=self.judge_slots)
