"""Asset storage: every table is Parquet under the warehouse directory, one file per partition."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from dagster import InputContext, MetadataValue, OutputContext
from dagster_polars import PolarsParquetIOManager

from resources.files import replace_directory, written_whole

PARTITION_DICT = "partition_dict"


@dataclass(frozen=True)
class StagedParquet:
    """A partition an engine (Ray, Spark) has written as a directory of Parquet files (a set of rows:
    readers sort where order matters). The asset returns this instead of a table, so the rows never pass through the
    Dagster process; the IO manager swaps the directory in whole. Readers scan it lazily."""

    path: Path

    def rows(self) -> int:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(self.path.glob("*.parquet")))


class WarehouseIOManager(PolarsParquetIOManager):
    """dagster-polars' Parquet IO manager, with two changes. An input marked ``partition_dict`` (every
    drop, every release) always gets ``{partition: frame}``, empty when none exists yet: Dagster
    unwraps the value when exactly one partition exists (and gives None for none), which would hand
    a one-drop catalog a different type than a four-drop one. And a table is written beside its file
    and renamed over it, so a reader in another run (a publish reading every drop while one drop is
    being labelled) sees the old table or the new one, never half a file, and a failed write leaves
    the old one."""

    def write_df_to_path(self, context: OutputContext, df: pl.DataFrame, path) -> None:
        with written_whole(path) as staged:
            super().write_df_to_path(context, df, staged)

    def sink_df_to_path(self, context: OutputContext, df: pl.LazyFrame, path) -> None:
        with written_whole(path) as staged:
            super().sink_df_to_path(context, df, staged)

    def handle_output(self, context: OutputContext, obj) -> None:
        """A table or an engine-written directory for one partition; for a run over several partitions
        (a single-run backfill: a release re-scoring every drop), ``{partition: table or directory}``."""
        if context.has_asset_partitions and isinstance(obj, dict):
            paths = self._get_paths_for_partitions(context)
            if set(obj) != set(paths):
                raise ValueError(f"the output holds partitions {sorted(obj)}, the run writes {sorted(paths)}")
            for key, path in sorted(paths.items()):
                if isinstance(obj[key], StagedParquet):
                    self._swap_in(obj[key], Path(str(path)))
                else:
                    self.make_directory(path.parent)
                    self.write_df_to_path(context, obj[key], path)
            context.add_output_metadata({"partitions_written": len(paths)})
            return
        if not isinstance(obj, StagedParquet):
            return super().handle_output(context, obj)
        paths = self._get_paths_for_partitions(context) if context.has_asset_partitions else {"": self._get_path(context)}
        if len(paths) != 1:
            raise ValueError(f"a staged Parquet directory is one partition, not {len(paths)}")
        target = Path(str(next(iter(paths.values()))))
        self._swap_in(obj, target)
        context.add_output_metadata({"path": MetadataValue.path(str(target))})

    @staticmethod
    def _swap_in(staged: StagedParquet, target: Path) -> None:
        if not any(staged.path.glob("*.parquet")):
            raise ValueError(f"{staged.path} holds no Parquet file: the engine wrote nothing")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_file():  # a table written whole before the engine wrote this asset
            target.unlink()
        replace_directory(staged.path, target)

    def load_input(self, context: InputContext):
        if not context.definition_metadata.get(PARTITION_DICT):
            return super().load_input(context)
        keys = context.asset_partition_keys if context.has_asset_partitions else []
        if not keys:
            return {}
        loaded = super().load_input(context)
        if not isinstance(loaded, dict):
            return {keys[0]: loaded} if loaded is not None else {}
        return loaded


def parquet_io_manager(warehouse_dir: Path) -> WarehouseIOManager:
    return WarehouseIOManager(base_dir=str(warehouse_dir))
