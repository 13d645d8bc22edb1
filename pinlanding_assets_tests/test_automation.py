"""Declarative Automation on a real instance with the Dagster daemon, over a small real catalog.

After a baseline published by `pinlanding run` (two drops, release r001, three weeks of searches):
- a new drop is published by automation with the release in service: only its own partitions and the
  publish assets of r001 are materialized (no vocabulary, no encoder, no old drop re-scored);
- its VLM labels then make a new release due: the release sensor cuts r002, automation builds it,
  re-scores every drop, and publishes r002 only once every drop is scored with it;
- a new week of searches (the code location reloaded) refreshes that week, the window and the pages;
- `pinlanding run --only` publishes a new drop with the release in service, and refuses to publish a
  release that only that drop is scored with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pinlanding_assets.catalog.drops import write_fashion_drop
from pinlanding_assets.collections.feeds import read_feeds
from pinlanding_assets.demand.intents import split_search_log
from pinlanding_assets.instance import PROJECT_DAGSTER_YAML
from pinlanding_assets.refresh_audit import DaemonProcess, latest, materialized_since
from pinlanding_assets.settings import get_paths

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PER_DROP = {"catalog_products", "catalog_quarantine", "catalog_labels", "catalog_image_features", "catalog_profile",
            "raw_vlm_attributes", "raw_vlm_quarantine", "product_embeddings", "attribute_assignments",
            "assignment_quarantine"}
RELEASE = {"curated_vocabulary", "dual_encoder", "attribute_embeddings", "attribute_embedding_rejections",
           "model_release"}
PUBLISH = {"demand_intents", "collections", "attribute_reliability", "demand_gaps", "publish_exclusions",
           "collection_feeds", "search_baseline", "collection_comparison", "landing_pages"}
WEEKLY = {"query_intents", "search_log_quarantine", "demand_window"}


@pytest.mark.timeout(2400)
def test_daemon_refreshes_incrementally(project_dirs: Path, fashion_dir: Path, tmp_path: Path) -> None:
    home = Path(os.environ["DAGSTER_HOME"])
    (home / "dagster.yaml").write_text(PROJECT_DAGSTER_YAML.read_text())
    landing, log_dir = project_dirs / "landing", project_dirs / "search_log"
    all_weeks = sorted(split_search_log(get_paths().shared_search_log, tmp_path / "weeks"))
    log_dir.mkdir(parents=True)
    for week in all_weeks[:3]:
        shutil.copy(week, log_dir / week.name)
    write_fashion_drop(fashion_dir, landing, "drop-001", 0, 30)
    write_fashion_drop(fashion_dir, landing, "drop-002", 30, 30)
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
           "PINLANDING_MODEL_CACHE": str(project_dirs.parent / "models"),
           "PINLANDING_LLM": "qwen2.5-coder-0.5b-instruct-q4", "PINLANDING_ATTRIBUTE_SAMPLE": "6",
           "PINLANDING_MIN_SUPPORT": "1", "PINLANDING_ENCODER_PRODUCTS": "300", "PINLANDING_MAX_COLLECTIONS": "12",
           "PINLANDING_MIN_FEED_SIZE": "3", "PINLANDING_DEMAND_WEEKS": "2",
           "PINLANDING_RELEASE_NEW_LABEL_SHARE": "0.4", "RAY_DEDUP_LOGS": "0",
           # 30-product drops give a handful of judged products per attribute: too few to certify 0.9
           "PINLANDING_TARGET_PRECISION": "0.5", "PINLANDING_MIN_JOINT_CONFIDENCE": "0.2"}
    subprocess.run([VENV_BIN / "pinlanding", "run"], cwd=ROOT, env=env, check=True, timeout=1200)
    site = project_dirs / "site"
    assert (site / "release.txt").read_text().strip() == "r001"

    daemon = DaemonProcess(ROOT, env, tmp_path / "daemon.log")
    with dg.DagsterInstance.get() as instance:
        try:
            # a new drop: published with r001, then labelled
            started = time.time()
            daemon.start()
            write_fashion_drop(fashion_dir, landing, "drop-003", 60, 30)
            pages = lambda release: latest(instance, "landing_pages", release)  # noqa: E731
            daemon.wait_for(instance, "drop-003 on the pages", lambda: pages("r001").timestamp > started, 900)
            published = pages("r001").timestamp
            before_pages = materialized_since(instance, started, published + 0.001)
            assert {a for a, p in before_pages if a in PER_DROP} <= PER_DROP - {"raw_vlm_attributes",
                                                                                 "raw_vlm_quarantine"}
            assert {p for a, p in before_pages if a in PER_DROP} == {"drop-003"}, "no old drop re-scored"
            assert {p for a, p in before_pages if a in PUBLISH} == {"r001"}
            assert not {a for a, _ in before_pages} & (RELEASE | WEEKLY), "no vocabulary, no encoder"
            products = pl.read_parquet(project_dirs / "warehouse" / "catalog_products" / "drop-003.parquet")
            feeds = read_feeds(project_dirs / "warehouse" / "published_feeds" / "r001")
            assert set(feeds["product_id"]) & set(products["product_id"]), "the new drop's products reach the feeds"
            titles = latest(instance, "collections", "r001").asset_materialization.metadata
            assert titles["title_cache_hits"].value > 0

            # its labels make a release due: r002 is built, every drop re-scored, then published
            daemon.wait_for(instance, "release r002 published", lambda: pages("r002") is not None, 1500)
            scored = [latest(instance, "attribute_assignments", d) for d in ("drop-001", "drop-002", "drop-003")]
            assert all(r.asset_materialization.metadata["release"].value == "r002" for r in scored)
            assert max(r.timestamp for r in scored) < pages("r002").timestamp, "published once every drop is scored"
            assert (site / "release.txt").read_text().strip() == "r002"
            vocabulary = latest(instance, "curated_vocabulary", "r002").asset_materialization.metadata
            assert vocabulary["drops"].value == ["drop-001", "drop-002", "drop-003"]
            r001_pages = pages("r001").timestamp
            assert r001_pages == published, "the old release is not published again"

            # a new week of searches: the code location reloads (the week partitions grow)
            daemon.drain(instance)
            daemon.stop()
            shutil.copy(all_weeks[3], log_dir / all_weeks[3].name)
            week_started = time.time()
            daemon.start()
            new_week = "2006-03-20"
            daemon.wait_for(instance, "the new week on the pages", lambda: (
                latest(instance, "query_intents", new_week) is not None
                and pages("r002").timestamp > week_started), 900)
            refreshed = materialized_since(instance, week_started)
            assert ("query_intents", new_week) in refreshed and ("demand_window", new_week) in refreshed
            assert {a for a, _ in refreshed} <= WEEKLY | PUBLISH, "a new week re-trains and re-scores nothing"
            assert {p for a, p in refreshed if a in PUBLISH} == {"r002"}
            daemon.drain(instance)
            failed = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=5)
            assert not failed, [r.dagster_run.run_id for r in failed]
        finally:
            daemon.stop()

        # the CLI: --only publishes a new drop with r002 (no release cut) ...
        write_fashion_drop(fashion_dir, landing, "drop-004", 90, 30)
        subprocess.run([VENV_BIN / "pinlanding", "run", "--only", "drop-004"], cwd=ROOT, env=env, check=True,
                       timeout=900)
        assert latest(instance, "attribute_assignments", "drop-004").asset_materialization.metadata[
            "release"].value == "r002"
        assert latest(instance, "model_release", "r003") is None
        # ... and with a release r003 built but only drop-004 scored with it, nothing is published
        subprocess.run([VENV_BIN / "pinlanding", "release", "--cut-only"], cwd=ROOT, env=env, check=True)
        subprocess.run([VENV_BIN / "dagster", "asset", "materialize", "-m", "pinlanding_assets.definitions",
                        "--select", "curated_vocabulary,dual_encoder,attribute_embeddings,"
                                    "attribute_embedding_rejections,model_release", "--partition", "r003"],
                       cwd=ROOT, env=env, check=True, timeout=900)
        mixed = subprocess.run([VENV_BIN / "pinlanding", "run", "--only", "drop-004", "--from-stage", "scoring"],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert mixed.returncode == 1 and "drop-001 (scored with r002)" in mixed.stderr, mixed.stderr[-2000:]
        assert (site / "release.txt").read_text().strip() == "r002"
        assert latest(instance, "landing_pages", "r003") is None
