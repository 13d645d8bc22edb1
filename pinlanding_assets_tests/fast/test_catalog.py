"""Catalog intake on small synthetic drops: drops, validation, quarantine and its check."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from pinlanding_assets.catalog import assets as catalog_assets
from pinlanding_assets.catalog import checks as catalog_checks
from pinlanding_assets.catalog.drops import DropError, drop_dir, mark_ready, ready_drops, refused_drops
from pinlanding_assets.catalog.products import FASHION_COLUMNS, CatalogTableError, validate_catalog
from pinlanding_assets.deployment import resources_for
from pinlanding_assets.partitions import catalog_drops
from pinlanding_assets.settings import QualityGates, load_settings
from pinlanding_assets_tests.fast.synthetic import draw_product, fashion_rows, write_fashion_drop
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
            resources=resources_for(), selection=["catalog_products", "catalog_quarantine", "catalog_ground_truth"],
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
                              resources={"io_manager": parquet_io_manager(warehouse), "quality_gates": gates,
                                         "project": load_settings({"PINLANDING_LANDING_DIR": str(landing)})})


def test_intake_quarantines_with_reasons_and_the_gate_reads_its_resource(tmp_path: Path) -> None:
    rows = fashion_rows(12)
    rows[3]["productDisplayName"] = "  "
    rows[5]["id"] = rows[4]["id"]
    drop = write_fashion_drop(tmp_path / "landing" / "drop-a", rows)
    (drop / "images" / f"{rows[7]['id']}.jpg").write_bytes(b"not a jpeg")
    gates = dict(min_fused_recall=0.9, min_image_recall=0.8, min_feed_size=10, max_feed_size=100,
                 min_precision_at_10=0.5)
    strict = _intake(drop.parent, tmp_path / "strict", QualityGates(max_quarantine_rate=0.1, **gates))
    products, quarantine, ground_truth = (strict.asset_value(name) for name in
                                    ("catalog_products", "catalog_quarantine", "catalog_ground_truth"))
    assert products.height == 9 and quarantine.height == 3, "every row leaves as a product or a quarantine row"
    reasons = " ".join(quarantine["reason"])
    assert "empty title" in reasons and "duplicate" in reasons and "undecodable" in reasons
    assert "articleType" in ground_truth.columns and "articleType" not in products.columns
    check = strict.get_asset_check_evaluations()[0]
    assert not check.passed and check.metadata["threshold"].value == 0.1, "3 of 12 quarantined is over 10%"
    lenient = _intake(drop.parent, tmp_path / "lenient", QualityGates(max_quarantine_rate=0.3, **gates))
    assert lenient.get_asset_check_evaluations()[0].passed
    assert lenient.asset_value("catalog_products").equals(products), "re-materializing gives the same rows"


def _line(row: dict[str, str]) -> str:
    return ",".join(row[c] for c in FASHION_COLUMNS)


def test_each_broken_row_costs_only_itself(tmp_path: Path) -> None:
    """An oversized field, an unclosed quote and a NUL byte quarantine their own rows; the rows after
    them are read as usual."""
    rows = fashion_rows(8)
    drop = write_fashion_drop(tmp_path / "drop-bad", rows)
    lines = [",".join(FASHION_COLUMNS)] + [_line(row) for row in rows]
    lines[2] = _line({**rows[1], "productDisplayName": "x" * 200_000})
    lines[4] = _line({**rows[3], "productDisplayName": '"Unclosed quote Tshirt'})
    lines[6] = _line({**rows[5], "productDisplayName": "Nul\x00 byte Jeans"})
    (drop / "catalog.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tables = validate_catalog("drop-bad", drop)
    reasons = dict(zip(tables.quarantine["source_row"], tables.quarantine["reason"]))
    assert set(reasons) == {3, 5, 7} and tables.products.height == 5, reasons
    assert "field larger than field limit" in reasons[3] or "unreadable CSV row" in reasons[3]
    assert reasons[5].startswith("unclosed quote") and reasons[7] == "control character U+0000 in field 'productDisplayName'"
    assert sorted(tables.products["product_id"]) == sorted(r["id"] for i, r in enumerate(rows) if i not in (1, 3, 5))
    assert all(len(raw) <= 2_000 for raw in tables.quarantine["raw"]), "the oversized record is kept as a preview"


def test_a_quoted_field_may_still_span_lines(tmp_path: Path) -> None:
    rows = fashion_rows(3)
    drop = write_fashion_drop(tmp_path / "drop-ok", rows)
    lines = [",".join(FASHION_COLUMNS)] + [_line(row) for row in rows]
    lines[2] = _line({**rows[1], "productDisplayName": '"Two-line\nJeans, blue"'})
    (drop / "catalog.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tables = validate_catalog("drop-ok", drop)
    assert tables.quarantine.height == 0 and "Two-line Jeans, blue" in tables.products["title"].to_list()


def test_a_header_without_rows_is_refused(tmp_path: Path) -> None:
    drop = tmp_path / "drop-h"
    drop.mkdir()
    (drop / "catalog.csv").write_text(",".join(FASHION_COLUMNS) + "\n\n")
    with pytest.raises(CatalogTableError, match="has no product rows"):
        validate_catalog("drop-h", drop)


def test_image_paths_stay_inside_the_drop(tmp_path: Path) -> None:
    drop = tmp_path / "drop-g"
    draw_product(drop / "img" / "a.jpg", "Red")
    draw_product(tmp_path / "outside.jpg", "Blue")
    table = ("product_id,title,image_path\n1,Red Top,img/a.jpg\n2,Blue Top,/etc/passwd\n3,Blue Top,../outside.jpg\n"
             "4,Blue Top,img/../../outside.jpg\n5,Red Top,./img/a.jpg\n")
    (drop / "products.csv").write_text(table)
    tables = validate_catalog("drop-g", drop)
    reasons = dict(zip(tables.quarantine["product_id"], tables.quarantine["reason"]))
    assert sorted(tables.products["product_id"]) == ["1", "5"]
    assert "is absolute" in reasons["2"] and "leaves the drop directory" in reasons["3"]
    assert "leaves the drop directory" in reasons["4"]


def test_ready_drops_with_refused_names_are_reported(tmp_path: Path) -> None:
    from pinlanding_assets.refresh.sensors import catalog_drop_sensor

    for name in ("drop 5", "drop-ünï", ".hidden-drop", "drop-ok"):
        (tmp_path / name).mkdir()
        mark_ready(tmp_path / name)
    (tmp_path / "not ready").mkdir()
    refused = refused_drops(tmp_path)
    assert sorted(refused) == [".hidden-drop", "drop 5", "drop-ünï"] and ready_drops(tmp_path) == ["drop-ok"]
    assert all("refused" in reason and "rename the directory" in reason for reason in refused.values())
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(catalog_drops.name, ["drop-ok"])
        project = load_settings({"PINLANDING_LANDING_DIR": str(tmp_path)})
        skipped = catalog_drop_sensor(dg.build_sensor_context(instance=instance, cursor='["drop-ok"]',
                                                              resources={"project": project}))
        reason = skipped.skip_reason.skip_message
        assert "'drop 5' refused" in reason and "'.hidden-drop' refused" in reason
        assert json.loads(skipped.cursor)["refused"] == sorted(refused), "each refused name is logged once"


def test_shop_fields_are_kept_or_quarantine_their_row(tmp_path: Path) -> None:
    drop = tmp_path / "drop-s"
    draw_product(drop / "img" / "a.jpg", "Red")
    rows = [
        "1,Red Top,img/a.jpg,https://shop.example/p/1,19.90,EUR,In Stock",
        "2,Red Top,img/a.jpg,,,,",
        "3,Red Top,img/a.jpg,javascript:alert(1),,,",
        "4,Red Top,img/a.jpg,https://shop.example/p/4,-3,EUR,",
        "5,Red Top,img/a.jpg,https://shop.example/p/5,12.00,eur,",
        "6,Red Top,img/a.jpg,https://shop.example/p/6,12.00,USD,sold",
        "7,Red Top,img/a.jpg,/p/7,,,",
        '8,Red Top,img/a.jpg,https://shop.example/p/8,"1,299.5",INR,out-of-stock',
    ]
    (drop / "products.csv").write_text("product_id,title,image_path,product_url,price,currency,availability\n"
                                       + "\n".join(rows) + "\n")
    tables = validate_catalog("drop-s", drop)
    kept = {r["product_id"]: r for r in tables.products.iter_rows(named=True)}
    reasons = dict(zip(tables.quarantine["product_id"], tables.quarantine["reason"]))
    assert sorted(kept) == ["1", "2", "8"] and sorted(reasons) == ["3", "4", "5", "6", "7"]
    assert (kept["1"]["product_url"], kept["1"]["price"], kept["1"]["currency"], kept["1"]["availability"]) == (
        "https://shop.example/p/1", 19.9, "EUR", "in_stock")
    assert kept["2"]["price"] is None and kept["2"]["product_url"] is None
    assert (kept["8"]["price"], kept["8"]["availability"]) == (1299.5, "out_of_stock")
    assert "not an absolute http(s) URL" in reasons["3"] and "not an absolute http(s) URL" in reasons["7"]
    assert "not a number >= 0" in reasons["4"] and "three capital letters" in reasons["5"]
    assert "availability 'sold' is not one of" in reasons["6"]
