"""The Ray pool: a local Ray by default, an existing cluster when an address is configured.

It also answers the one question model stages must get right on a 2-CPU laptop and a GPU cluster
alike: how much to ask Ray for. Asking for whole CPUs deadlocks a 2-core machine; asking for a GPU
that does not exist waits forever. So stages ask the pool, never Ray directly.
"""

from __future__ import annotations

from typing import Any, Literal

from dagster_ray import LocalRay
from pydantic import Field


class RayPool(LocalRay):
    """dagster-ray's ``LocalRay`` that joins ``address`` when one is set (``auto``, ``host:port``,
    ``ray://host:10001``) and knows whether the cluster has GPUs."""

    address: str | None = Field(default=None, description="Existing Ray cluster to join; None starts a local Ray.")
    use_gpus: Literal["auto", "never"] = Field(
        default="auto", description="'auto' uses GPUs only when the cluster reports some; 'never' stays on CPUs."
    )
    cpus_per_model_actor: float = Field(
        default=0.5, description="CPUs each model actor asks for when no GPU is used (fractional on small hosts)."
    )
    max_model_actors: int = Field(default=2, description="Upper bound of the model-stage actor pool.")

    @property
    def ray_address(self) -> str | None:  # type: ignore[override]
        return self.address

    @property
    def name(self) -> str:
        return f"Ray cluster at {self.address}" if self.address else "LocalRay"

    def gpus_available(self) -> float:
        import ray

        return float(ray.cluster_resources().get("GPU", 0.0)) if ray.is_initialized() else 0.0

    def cpus_available(self) -> float:
        import ray

        return float(ray.cluster_resources().get("CPU", 0.0)) if ray.is_initialized() else 0.0

    def model_stage_options(self, actors: int | None = None) -> dict[str, Any]:
        """Resource asks and pool size for a ``map_batches`` model stage on this cluster.

        ``actors`` fixes the pool size (a model per actor); otherwise the pool grows up to
        ``max_model_actors`` within what the cluster has.
        """
        from ray.data import ActorPoolStrategy

        gpus = self.gpus_available() if self.use_gpus == "auto" else 0.0
        if gpus >= 1:
            size = actors or max(1, min(self.max_model_actors, int(gpus)))
            return {"num_gpus": 1, "compute": ActorPoolStrategy(size=min(size, int(gpus)))}
        if actors:
            return {"num_cpus": self.cpus_per_model_actor, "compute": ActorPoolStrategy(size=actors)}
        cpus = self.cpus_available() or 1.0
        size = max(1, min(self.max_model_actors, int(cpus / max(self.cpus_per_model_actor, 0.1)) - 1))
        return {"num_cpus": self.cpus_per_model_actor, "compute": ActorPoolStrategy(min_size=1, max_size=size)}
