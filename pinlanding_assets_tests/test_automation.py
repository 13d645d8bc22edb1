"""Declarative Automation on a real instance with the Dagster daemon, over a small real catalog, with
the instance in a real PostgreSQL server (a throwaway cluster, as production keeps it).

After a baseline published by `pinlanding run` (two drops, release r001, three weeks of searches):
- a new drop is published by automation with the release in service, although its first run worker is
  killed (kill -9) mid-run: the run is marked failed and retried with no manual step; only its own
  partitions and the publish assets of r001 are materialized (no vocabulary, no encoder, no old drop
  re-scored);
- a drop landing while labelling and the release build run goes through the serving lane beside them,
  never queued behind them;
- its VLM labels then make a new release due: the release sensor cuts r002, automation builds it,
  re-scores every drop in one run, and publishes r002 only once every drop is scored with it;
- a new week of searches (the code location reloaded) refreshes that week, the window and the pages;
- an edit of the merchandising overrides file alone publishes the release in service again, with the
  pin and the new title on the page;
- `pinlanding run --only` publishes a new drop with the release in service, and refuses to publish a
  release that only that drop is scored with.
"""

from __future__ import annotations

import os
import shutil
import signal
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
from pinlanding_assets.instance import ensure_dagster_home
from pinlanding_assets.refresh.conditions import LANE_TAG
from pinlanding_assets.refresh.releases import latest_record
from pinlanding_assets.settings import get_paths
from pinlanding_assets_tests.daemon import DaemonProcess, materialized_since
from pinlanding_assets_tests.postgres import postgres_server

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PER_DROP = {"catalog_products", "catalog_quarantine", "catalog_ground_truth", "catalog_image_features", "catalog_profile",
            "raw_vlm_attributes", "raw_vlm_quarantine", "product_embeddings", "attribute_assignments",
            "assignment_quarantine"}
RELEASE = {"curated_vocabulary", "dual_encoder", "attribute_embeddings", "attribute_embedding_rejections",
           "model_release"}
PUBLISH = {"demand_intents", "collections", "attribute_reliability", "demand_gaps", "publish_exclusions",
           "collection_feeds", "search_baseline", "collection_comparison", "landing_pages"}
WEEKLY = {"query_intents", "search_log_quarantine", "demand_window"}


STARTED = dg.DagsterRunStatus.STARTED


@pytest.fixture
def postgres_url(monkeypatch: pytest.MonkeyPatch):
    with postgres_server() as url:
        monkeypatch.setenv("PINLANDING_POSTGRES_URL", url)
        yield url


def _runs(instance: dg.DagsterInstance, **tags: str) -> list:
    return list(instance.get_run_records(dg.RunsFilter(tags=tags), limit=500))


def _run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process executing a run's steps, as the run's engine event records it."""
    for entry in instance.all_logs(run_id):
        message = entry.user_message or ""
        if message.startswith("Executing steps in process (pid: "):
            return int(message.split("pid: ")[1].split(")")[0])
    return None


def _overlaps(first, second) -> bool:
    return first.start_time < (second.end_time or time.time()) and second.start_time < (first.end_time or time.time())


@pytest.mark.timeout(2700)
def test_daemon_refreshes_incrementally(project_dirs: Path, fashion_dir: Path, tmp_path: Path, postgres_url: str) -> None:
    ensure_dagster_home()
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
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        try:
            # a new drop: its scoring run's worker is killed; the run is retried, then published with r001
            started = time.time()
            daemon.start()
            write_fashion_drop(fashion_dir, landing, "drop-003", 60, 30)
            scoring = lambda: [r for r in _runs(instance, **{"dagster/partition": "drop-003"})  # noqa: E731
                               if r.dagster_run.status == STARTED and _run_worker_pid(instance, r.dagster_run.run_id)
                               and dg.AssetKey("product_embeddings") in (r.dagster_run.asset_selection or ())]
            daemon.wait_for(instance, "drop-003's scoring run to start", lambda: bool(scoring()), 600)
            killed = scoring()[0].dagster_run.run_id
            os.kill(_run_worker_pid(instance, killed), signal.SIGKILL)
            pages = lambda release: latest_record(instance, "landing_pages", release)  # noqa: E731
            daemon.wait_for(instance, "drop-003 on the pages", lambda: pages("r001").timestamp > started, 900)
            assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE
            retries = _runs(instance, **{"dagster/parent_run_id": killed})
            assert [r.dagster_run.status for r in retries] == [dg.DagsterRunStatus.SUCCESS], "retried, no manual step"
            assert "drop-003" in pages("r001").asset_materialization.metadata["drops_on_pages"].value
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
            titles = latest_record(instance, "collections", "r001").asset_materialization.metadata
            assert titles["title_cache_hits"].value > 0

            # drop-003's labelling (learning lane) starts; a small drop landing now is served beside it
            learning = lambda: [r for r in _runs(instance, **{LANE_TAG: "learning"})  # noqa: E731
                                if r.dagster_run.status == STARTED]
            daemon.wait_for(instance, "drop-003's labelling run", lambda: bool(learning()), 600)
            write_fashion_drop(fashion_dir, landing, "drop-005", 120, 10)

            # drop-003's labels make a release due: r002 is built, every drop re-scored, then published
            daemon.wait_for(instance, "release r002 published", lambda: pages("r002") is not None, 1500)
            served = _runs(instance, **{"dagster/partition": "drop-005", LANE_TAG: "serving"})
            assert all(r.start_time - r.create_timestamp.timestamp() < 60 for r in served), "never queued behind learning"
            assert any(_overlaps(s, lr) for s in served for lr in _runs(instance, **{LANE_TAG: "learning"})
                       if lr.start_time), "the two lanes ran side by side"
            drops = ("drop-001", "drop-002", "drop-003", "drop-005")
            scored = [latest_record(instance, "attribute_assignments", d) for d in drops]
            assert all(r.asset_materialization.metadata["release"].value == "r002" for r in scored)
            assert len({r.run_id for r in scored[:3]}) == 1, "the release re-scored the drops in one run"
            assert max(r.timestamp for r in scored) < pages("r002").timestamp, "published once every drop is scored"
            assert set(pages("r002").asset_materialization.metadata["drops_on_pages"].value) == set(drops)
            assert (site / "release.txt").read_text().strip() == "r002"
            vocabulary = latest_record(instance, "curated_vocabulary", "r002").asset_materialization.metadata
            assert set(drops[:3]) <= set(vocabulary["drops"].value) <= set(drops)
            assert pages("r001").timestamp < pages("r002").timestamp, "the old release is not published again"
            for record in instance.fetch_materializations(dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey("landing_pages"), after_timestamp=started), limit=100).records:
                feeds_of_run = instance.fetch_materializations(dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey("collection_feeds"), after_timestamp=started), limit=100).records
                assert record.run_id in {f.run_id for f in feeds_of_run}, "pages are built in one run with their feeds"
            daemon.wait_for(instance, "drop-005 labelled", lambda: latest_record(instance, "raw_vlm_attributes",
                                                                          "drop-005") is not None, 900)

            # a new week of searches: the code location reloads (the week partitions grow)
            daemon.drain(instance)
            daemon.stop()
            shutil.copy(all_weeks[3], log_dir / all_weeks[3].name)
            week_started = time.time()
            daemon.start()
            new_week = "2006-03-20"
            daemon.wait_for(instance, "the new week on the pages", lambda: (
                latest_record(instance, "query_intents", new_week) is not None
                and pages("r002").timestamp > week_started), 900)
            refreshed = materialized_since(instance, week_started)
            assert ("query_intents", new_week) in refreshed and ("demand_window", new_week) in refreshed
            assert {a for a, _ in refreshed} <= WEEKLY | PUBLISH, "a new week re-trains and re-scores nothing"
            assert {p for a, p in refreshed if a in PUBLISH} == {"r002"}

            # a merchandiser pins a product and renames a page: the edit alone publishes r002 again
            shown = read_feeds(project_dirs / "warehouse" / "published_feeds" / "r002")
            slug = shown["collection_id"][0]
            pinned = shown.filter(pl.col("collection_id") == slug)["product_id"][-1]
            edited = time.time()
            get_paths().overrides_file.write_text(
                f'[collections.{slug}]\ntitle = "Edited By Merchandising"\npin = {{ "{pinned}" = 1 }}\n')
            daemon.wait_for(instance, "the override on the pages", lambda: pages("r002").timestamp > edited, 900)
            top = read_feeds(project_dirs / "warehouse" / "published_feeds" / "r002").filter(
                (pl.col("collection_id") == slug) & (pl.col("rank") == 1))
            assert top.select("product_id", "override").row(0) == (pinned, "pin:1")
            page = (site / "c" / f"{slug}.html").read_text()
            assert "<h1>Edited By Merchandising</h1>" in page
            assert {a for a, _ in materialized_since(instance, edited)} <= PUBLISH | {"merchandising_overrides"}
            daemon.drain(instance)
            failed = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=5)
            assert [r.dagster_run.run_id for r in failed] == [killed], "the killed run is the only failure"
        finally:
            daemon.stop()

        # the CLI: --only publishes a new drop with r002 (no release cut) ...
        write_fashion_drop(fashion_dir, landing, "drop-004", 90, 30)
        subprocess.run([VENV_BIN / "pinlanding", "run", "--only", "drop-004"], cwd=ROOT, env=env, check=True,
                       timeout=900)
        assert latest_record(instance, "attribute_assignments", "drop-004").asset_materialization.metadata[
            "release"].value == "r002"
        assert latest_record(instance, "model_release", "r003") is None
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
        assert latest_record(instance, "landing_pages", "r003") is None
