"""The trained encoder as a typed record: what to build (``EncoderSpec``) and one ``dual_encoder`` row
(``EncoderRecord``), whose JSON columns are written and parsed here and nowhere else. Torch-free, so
the CLI and the collections read a release without loading the model code."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import polars as pl

DEFAULT_ARCH = "pinlanding-effnetlite0-minilm"


@dataclass(frozen=True)
class EncoderSpec:
    """What to build: an open_clip model name, optional checkpoint, and the product fusion weight."""

    model_name: str = DEFAULT_ARCH
    checkpoint: str | None = None
    image_weight: float = 0.5
    context_length: int = 32
    seed: int = 0
    colour_descriptor: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class EncoderRecord:
    """A release's trained encoder: ``spec`` carries its checkpoint; ``thresholds`` the calibrated
    per-attribute assignment thresholds; ``metrics`` the holdout evaluation; ``training`` the report."""

    release: str
    version: str
    checkpoint: str
    spec: EncoderSpec
    preprocess_cfg: dict
    thresholds: dict[str, float]
    metrics: dict
    training: dict

    def to_table(self) -> pl.DataFrame:
        """The one-row ``dual_encoder`` table (its spec column as trained: the checkpoint has its own)."""
        dump = lambda value: json.dumps(value, sort_keys=True)  # noqa: E731
        return pl.DataFrame([{
            "release": self.release, "version": self.version, "checkpoint": self.checkpoint,
            "spec": replace(self.spec, checkpoint=None).to_json(), "preprocess_cfg": dump(self.preprocess_cfg),
            "thresholds": dump(self.thresholds), "metrics": dump(self.metrics), "training": dump(self.training)}])

    @classmethod
    def from_table(cls, table: pl.DataFrame) -> EncoderRecord:
        row = table.row(0, named=True)
        # a spec saved before the colour descriptor existed describes a model without it
        spec = EncoderSpec(**{"colour_descriptor": False, **json.loads(row["spec"]), "checkpoint": row["checkpoint"]})
        return cls(release=row["release"], version=row["version"], checkpoint=row["checkpoint"], spec=spec,
                   preprocess_cfg=json.loads(row["preprocess_cfg"]), thresholds=json.loads(row["thresholds"]),
                   metrics=json.loads(row["metrics"]), training=json.loads(row["training"]))

    def recall_at_10(self, side: str) -> float:
        """Holdout Recall@10 of ``side``: fused, image_only or text_only."""
        return self.metrics[side]["recall_at_10"]
