"""The Ray pool: a local Ray by default, an existing cluster when an address is configured.

It also answers the one question model stages must get right on a 2-CPU laptop and a GPU cluster
alike: how much to ask Ray for. Asking for whole CPUs deadlocks a 2-core machine; asking for a GPU
that does not exist waits forever. So stages ask the pool, never Ray directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from dagster_ray import LocalRay
from pydantic import Field


def arrow_dataset(table: pa.Table, batch_size: int, max_blocks: int = 64):
    """A Ray dataset over ``table`` in up to ``max_blocks`` blocks (one block would leave every stage
    with a single task), sliced here rather than repartitioned by Ray: no shuffle stage to wait for."""
    import ray

    blocks = max(1, min(table.num_rows // max(batch_size, 1), max_blocks))
    rows = -(-table.num_rows // blocks) if table.num_rows else 0
    return ray.data.from_arrow([table.slice(i * rows, rows) for i in range(blocks)] if rows else [table])


def write_parquet_parts(dataset, staging: Path, schema: pa.Schema, rows_per_file: int = 8192) -> int:
    """Run ``dataset`` and write it as ``staging/part-NNNNNN.parquet`` (the engine writes, nothing
    passes through this process); returns the rows written. Row order is not kept (Ray hands blocks
    on as they finish): a partition is a set of rows and readers that need an order sort. ``staging`` is replaced; an
    empty result still gets one file with the schema."""
    import pyarrow.parquet as pq
    from ray.data import SaveMode
    from ray.data.datasource import FilenameProvider

    class TaskParts(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-{task_index:06d}.parquet"

    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    dataset.write_parquet(str(staging), filename_provider=TaskParts(), min_rows_per_file=rows_per_file,
                          mode=SaveMode.OVERWRITE)
    files = sorted(staging.glob("*.parquet"))
    if not files:
        staging.mkdir(parents=True, exist_ok=True)
        pq.write_table(schema.empty_table(), staging / "part-000000.parquet")
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def collect_sorted(dataset, schema: pa.Schema, key: str) -> pa.Table:
    """Run the dataset and return one table in ``schema``, sorted by ``key`` whatever order blocks finished in."""
    import ray

    tables = [table.cast(schema) for table in ray.get(dataset.to_arrow_refs())]
    return pa.concat_tables(tables).sort_by(key) if tables else schema.empty_table()


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
