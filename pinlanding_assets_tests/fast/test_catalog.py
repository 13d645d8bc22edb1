"""Catalog intake on small synthetic drops: drops, validation, quarantine and its check."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from pinlanding_assets.catalog import assets as catalog_assets
from pinlanding_assets.catalog import checks as catalog_checks
from pinlanding_assets.catalog.drops import DropError, drop_dir, ready_drops
from pinlanding_assets.catalog.products import CatalogTableError, validate_catalog
from pinlanding_assets.deployment import resources_for
from pinlanding_assets.partitions import catalog_drops
from pinlanding_assets.settings import QualityGates
from pinlanding_assets_tests.fast.synthetic import fashion_rows, write_fashion_drop
from resources.storage import parquet_io_manager


def test_unready_and_unknown_drops_are_refused(tmp_path: Path) -> None:
    (tmp_path / "drop-x").mkdir()
    assert ready_drops(tmp_path) == []
    with pytest.raises(DropError, match="not ready"):
        drop_dir(tmp_path, "drop-x")
    with pytest.raises(DropError, match="not found"):
        drop_dir(tmp_path, "drop-y")
    with pytest.raises(DropError, match="invalid drop name"):
        drop_dir(tmp_path, "../etc")


def test_cli_refuses_zero_drops_in_one_line(capsys) -> None:
    import pytest

    from pinlanding_assets.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["make-drops", "--drops", "0"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--drops: must be at least 1, got 0" in error and "Traceback" not in error


def test_missing_or_unreadable_table_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogTableError, match="catalog.csv, styles.csv, products.parquet, products.csv"):
        validate_catalog("empty", tmp_path)
    (tmp_path / "products.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(CatalogTableError, match="products.parquet"):
        validate_catalog("bad", tmp_path)
    (tmp_path / "products.parquet").unlink()
    (tmp_path / "catalog.csv").write_text("sku,name\n1,x\n")
    with pytest.raises(CatalogTableError, match="catalog.csv has header"):
        validate_catalog("bad", tmp_path)


def test_missing_product_table_fails_clearly(project_dirs: Path) -> None:
    drop = project_dirs / "landing" / "drop-empty"
    drop.mkdir(parents=True)
    (drop / "_READY").write_text("ready\n")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(catalog_drops.name, ["drop-empty"])
        result = dg.materialize(
            dg.load_assets_from_modules([catalog_assets]), partition_key="drop-empty", instance=instance,
            resources=resources_for(), selection=["catalog_products", "catalog_quarantine", "catalog_labels"],
            raise_on_error=False,
        )
        assert not result.success
        failure = result.get_step_failure_events()[0].step_failure_data.error.to_string()
        assert "CatalogTableError" in failure and "no product table in" in failure and "drop-empty" in failure
        assert not (project_dirs / "warehouse" / "catalog_products" / "drop-empty.parquet").exists()


def _intake(landing: Path, warehouse: Path, gates: QualityGates) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(catalog_drops.name, ["drop-a"])
        return dg.materialize([catalog_assets.catalog_products, catalog_checks.quarantine_rate_within_bounds],
                              partition_key="drop-a", instance=instance, raise_on_error=False,
                              resources={"io_manager": parquet_io_manager(warehouse), "quality_gates": gates})


def test_intake_quarantines_with_reasons_and_the_gate_reads_its_resource(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = fashion_rows(12)
    rows[3]["productDisplayName"] = "  "
    rows[5]["id"] = rows[4]["id"]
    drop = write_fashion_drop(tmp_path / "landing" / "drop-a", rows)
    (drop / "images" / f"{rows[7]['id']}.jpg").write_bytes(b"not a jpeg")
    monkeypatch.setenv("PINLANDING_LANDING_DIR", str(tmp_path / "landing"))
    gates = dict(min_fused_recall=0.9, min_image_recall=0.8, min_feed_size=10, max_feed_size=100,
                 min_precision_at_10=0.5)
    strict = _intake(drop.parent, tmp_path / "strict", QualityGates(max_quarantine_rate=0.1, **gates))
    products, quarantine, labels = (strict.asset_value(name) for name in
                                    ("catalog_products", "catalog_quarantine", "catalog_labels"))
    assert products.height == 9 and quarantine.height == 3, "every row leaves as a product or a quarantine row"
    reasons = " ".join(quarantine["reason"])
    assert "empty title" in reasons and "duplicate" in reasons and "undecodable" in reasons
    assert "articleType" in labels.columns and "articleType" not in products.columns
    check = strict.get_asset_check_evaluations()[0]
    assert not check.passed and check.metadata["threshold"].value == 0.1, "3 of 12 quarantined is over 10%"
    lenient = _intake(drop.parent, tmp_path / "lenient", QualityGates(max_quarantine_rate=0.3, **gates))
    assert lenient.get_asset_check_evaluations()[0].passed
    assert lenient.asset_value("catalog_products").equals(products), "re-materializing gives the same rows"
