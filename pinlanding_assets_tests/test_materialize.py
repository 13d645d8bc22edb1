"""The catalog assets through Dagster for real: in-process on a broken drop, and via the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl

from pinlanding_assets.catalog import assets as catalog_assets
from pinlanding_assets.catalog import checks as catalog_checks
from pinlanding_assets.deployment import resources_for
from pinlanding_assets.partitions import catalog_drops
from pinlanding_assets_tests.conftest import BROKEN_REASONS

VENV_BIN = Path(sys.executable).parent


def test_broken_drop_materializes_with_quarantine(broken_drop: Path, project_dirs: Path) -> None:
    assets = dg.load_assets_from_modules([catalog_assets])
    checks = dg.load_asset_checks_from_modules([catalog_checks])
    with dg.instance_for_test() as instance:
        # A later partition registered but never materialized: checks must load the run's own partition.
        instance.add_dynamic_partitions(catalog_drops.name, ["drop-broken", "drop-later"])
        result = dg.materialize(
            [*assets, *checks], partition_key="drop-broken", instance=instance, resources=resources_for()
        )
        assert result.success
        products, quarantine, features, profile = (result.asset_value(name) for name in (
            "catalog_products", "catalog_quarantine", "catalog_image_features", "catalog_profile"))
        assert products.height == 41 and quarantine.height == 6
        assert set(BROKEN_REASONS) <= set(quarantine["product_id"])
        assert sorted(features["product_id"]) == sorted(products["product_id"])
        assert profile["products"].sum() == products.height
        checks_run = result.get_asset_check_evaluations()
        assert [c.passed for c in checks_run] == [True]
        metadata = result.asset_materializations_for_node("catalog_products")[0].metadata
        assert metadata["quarantined"].value == 6

        again = dg.materialize(
            [*assets, *checks], partition_key="drop-broken", instance=instance, resources=resources_for()
        )
        assert again.success
        assert again.asset_value("catalog_image_features").equals(features)


def _cli_env(project_dirs: Path) -> dict[str, str]:
    return {**os.environ, "PINLANDING_DATA_DIR": str(project_dirs), "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}


def test_dagster_cli_validates_and_materializes_a_real_drop(project_dirs: Path, fashion_dir: Path) -> None:
    env = _cli_env(project_dirs)
    root = Path(__file__).resolve().parent.parent
    subprocess.run([VENV_BIN / "dagster", "definitions", "validate", "-w", "workspace.yaml"], cwd=root, env=env, check=True)
    subprocess.run([VENV_BIN / "pinlanding", "make-drops", "--drops", "8"], cwd=root, env=env, check=True)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(catalog_drops.name, ["drop-008"])
    subprocess.run(
        [VENV_BIN / "dagster", "asset", "materialize", "-m", "pinlanding_assets.definitions",
         "--select", "catalog_products,catalog_quarantine,catalog_ground_truth,catalog_image_features,catalog_profile",
         "--partition", "drop-008"],
        cwd=root, env=env, check=True,
    )
    products = pl.read_parquet(project_dirs / "warehouse" / "catalog_products" / "drop-008.parquet")
    assert products.height > 400
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("catalog_profile"))
        assert event is not None and event.asset_materialization.partition == "drop-008"
