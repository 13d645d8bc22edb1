"""The attribute and encoder assets through Dagster on a real (deliberately broken) drop with the
fast LLM: intake, a release (vocabulary, dual encoder, attribute embeddings), scoring with it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl

from pinlanding_assets.definitions import all_assets, all_checks, all_jobs
from pinlanding_assets.deployment import resources_for
from pinlanding_assets.partitions import catalog_drops, model_releases
from pinlanding_assets.refresh.releases import latest_record
from pinlanding_assets.settings import load_settings


def test_graph_materializes_on_a_small_drop(broken_drop: Path, project_dirs: Path) -> None:
    settings = load_settings({**os.environ, "PINLANDING_LLM": "qwen2.5-coder-0.5b-instruct-q4",
                              "PINLANDING_ATTRIBUTE_SAMPLE": "8", "PINLANDING_MIN_SUPPORT": "2",
                              "PINLANDING_MODEL_CACHE": str(project_dirs.parent / "models")})
    defs = dg.Definitions(assets=all_assets, asset_checks=all_checks, jobs=all_jobs,
                          resources=resources_for(settings), executor=dg.in_process_executor)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(catalog_drops.name, ["drop-broken"])
        instance.add_dynamic_partitions(model_releases.name, ["r001"])
        intake = defs.resolve_job_def("drop_intake_job").execute_in_process(
            partition_key="drop-broken", instance=instance,
            asset_selection=[dg.AssetKey(k) for k in ("catalog_products", "catalog_quarantine", "catalog_ground_truth",
                                                      "catalog_image_features", "raw_vlm_attributes",
                                                      "raw_vlm_quarantine")])
        assert intake.success
        result = defs.resolve_job_def("release_job").execute_in_process(partition_key="r001", instance=instance)
        assert result.success
        scoring = defs.resolve_job_def("drop_scoring_job").execute_in_process(partition_key="drop-broken", instance=instance)
        assert scoring.success

        def value(asset: str, partition: str):
            """The asset as the code location's IO manager loads it."""
            return defs.load_asset_value(asset, partition_key=partition, instance=instance)

        warehouse = project_dirs / "warehouse"
        attributes = value("raw_vlm_attributes", "drop-broken")
        quarantine = value("raw_vlm_quarantine", "drop-broken")
        products = value("catalog_products", "drop-broken")
        assert attributes["product_id"].n_unique() + quarantine.height == 8, "every sampled product leaves"
        assert set(attributes["product_id"]) <= set(products["product_id"])
        assert set(attributes["backend"]) == {"offline"} and set(attributes["model"]) == {"qwen2.5-coder-0.5b-instruct-q4"}
        assert "category" in set(attributes["facet"])

        vocabulary = value("curated_vocabulary", "r001")
        assert vocabulary.height > 0 and vocabulary["decision"].is_in(["keep", "drop"]).all()
        metadata = result.asset_materializations_for_node("curated_vocabulary")[0].metadata
        assert metadata["size_raw_phrases"].value >= metadata["size_after_judge"].value
        assert "data:image/png;base64," in metadata["vocabulary_map"].value
        assert 0.0 <= metadata["coverage"].value <= 1.0

        encoder = value("dual_encoder", "r001")
        assert Path(encoder["checkpoint"][0]).is_file() and encoder["checkpoint"][0].endswith(f"{encoder['version'][0]}.pt")
        encoder_metadata = result.asset_materializations_for_node("dual_encoder")[0].metadata
        table = encoder_metadata["per_facet"].value.splitlines()
        assert table[0] == "| facet | products | fused | image_only | text_only |"
        assert any(line.startswith("| Recall@10 |") for line in table)
        assert encoder_metadata["colour_descriptor"].value is True
        embeddings = value("product_embeddings", "drop-broken")
        assert embeddings["product_id"].sort().to_list() == sorted(products["product_id"].to_list())
        assert set(embeddings["model_version"]) == {encoder["version"][0]}
        assert set(embeddings["release"]) == {"r001"}
        attributes_kept = value("attribute_embeddings", "r001")
        assert attributes_kept.height == vocabulary.filter(pl.col("decision") == "keep").height
        assignments = value("attribute_assignments", "drop-broken")
        assert set(assignments["attribute_id"]) <= set(attributes_kept["attribute_id"])
        assert set(assignments["release"]) == {"r001"} and set(assignments["model_version"]) == {encoder["version"][0]}
        exclusive = assignments.filter(pl.col("method") == "top1").group_by("product_id", "facet").len()
        assert (exclusive["len"] == 1).all()
        assert (warehouse / "attribute_assignments" / "drop-broken.parquet").is_dir(), "written by Ray, swapped in"
        assert assignments["product_id"].n_unique() == embeddings.height
        assert value("assignment_quarantine", "drop-broken").is_empty()

        # a release re-scores every drop in one run (a single-run range), with the same rows per drop
        shutil.copytree(broken_drop, broken_drop.parent / "drop-copy", symlinks=True)
        instance.add_dynamic_partitions(catalog_drops.name, ["drop-copy"])
        assert defs.resolve_job_def("drop_intake_job").execute_in_process(
            partition_key="drop-copy", instance=instance, asset_selection=[dg.AssetKey(k) for k in (
                "catalog_products", "catalog_quarantine", "catalog_ground_truth", "catalog_image_features")]).success
        runs = len(instance.get_run_records())
        both = defs.resolve_job_def("drop_scoring_job").execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": "drop-broken", "dagster/asset_partition_range_end": "drop-copy"})
        assert both.success and len(instance.get_run_records()) == runs + 1, "one run for both drops"
        again = value("attribute_assignments", "drop-broken")
        key = ["product_id", "attribute_id"]
        assert again.sort(key).equals(assignments.sort(key)), "scored alone or with others, a drop gets the same rows"
        copy = value("attribute_assignments", "drop-copy")
        assert copy.drop("drop").sort(key).equals(assignments.drop("drop").sort(key)) and set(copy["drop"]) == {"drop-copy"}
        for drop in ("drop-broken", "drop-copy"):
            record = latest_record(instance, "attribute_assignments", drop)
            assert record.run_id == both.run_id
            assert record.asset_materialization.metadata["release"].value == "r001"
            assert record.asset_materialization.metadata["drops"].value[drop]["products"] == embeddings.height

    # `pinlanding evaluate` on a labelled catalog directory prints one JSON object last
    env = {**os.environ, "PINLANDING_DATA_DIR": str(project_dirs), "PINLANDING_MODEL_CACHE": str(settings.paths.model_cache_dir)}
    done = subprocess.run([Path(sys.executable).parent / "pinlanding", "evaluate", "--catalog", str(broken_drop), "--json"],
                          env=env, check=True, capture_output=True, text=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures) >= {"fused", "image_only", "text_only", "model_version"}
    assert figures["model_version"] == encoder["version"][0] and figures["quarantined"] == 6
    assert figures["release"] == "r001"
    for name in ("fused", "image_only", "text_only"):
        assert 0.0 <= figures[name]["recall_at_10"] <= 1.0 and "per_facet" in figures[name]
