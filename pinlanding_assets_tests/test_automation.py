"""Declarative Automation on a real instance with the Dagster daemon, over a small real catalog, with
the instance in a real PostgreSQL server (a throwaway cluster, as production keeps it).

The scenarios run in order on one project (the module's ``refresh`` fixture: a baseline published by
`pinlanding run`, two drops, release r001, three weeks of searches, then the daemon), each a test of
its own so that one failing does not hide the next:
- a new drop is published by automation with the release in service, although its first run worker is
  killed (kill -9) mid-run: the run is marked failed and retried with no manual step; only its own
  partitions and the publish assets of r001 are materialized (no vocabulary, no encoder, no old drop
  re-scored);
- its VLM labels then make a new release due: the release sensor cuts r002 and automation builds it;
  a drop landing during the build goes through the serving lane beside it, never queued behind it;
  r002 re-scores every drop in one run and is published only once every drop is scored with it;
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
from collections.abc import Iterator
from dataclasses import dataclass
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
from pinlanding_assets_tests.conftest import point_project_at
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


@dataclass
class Refresh:
    """The project the scenarios share, and what one scenario leaves for the next."""

    data: Path
    fashion_dir: Path
    weeks: list[Path]
    env: dict[str, str]
    instance: dg.DagsterInstance
    daemon: DaemonProcess
    killed: str | None = None  # the run whose worker the first scenario kills

    @property
    def landing(self) -> Path:
        return self.data / "landing"

    @property
    def site(self) -> Path:
        return self.data / "site"

    def pages(self, release: str):
        return latest_record(self.instance, "landing_pages", release)

    def feeds(self, release: str) -> pl.DataFrame:
        return read_feeds(self.data / "warehouse" / "published_feeds" / release)


@pytest.fixture(scope="module")
def refresh(fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Refresh]:
    root = tmp_path_factory.mktemp("refresh")
    with pytest.MonkeyPatch.context() as patch, postgres_server() as url:
        data = point_project_at(root, patch)
        patch.setenv("PINLANDING_POSTGRES_URL", url)
        ensure_dagster_home()
        log_dir = data / "search_log"
        weeks = sorted(split_search_log(get_paths().shared_search_log, root / "weeks"))
        log_dir.mkdir(parents=True)
        for week in weeks[:3]:
            shutil.copy(week, log_dir / week.name)
        write_fashion_drop(fashion_dir, data / "landing", "drop-001", 0, 30)
        write_fashion_drop(fashion_dir, data / "landing", "drop-002", 30, 30)
        env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
               "PINLANDING_MODEL_CACHE": str(root / "models"),
               "PINLANDING_LLM": "qwen2.5-coder-0.5b-instruct-q4", "PINLANDING_ATTRIBUTE_SAMPLE": "6",
               "PINLANDING_MIN_SUPPORT": "1", "PINLANDING_ENCODER_PRODUCTS": "300", "PINLANDING_MAX_COLLECTIONS": "12",
               "PINLANDING_MIN_FEED_SIZE": "3", "PINLANDING_DEMAND_WEEKS": "2",
               "PINLANDING_RELEASE_NEW_LABEL_SHARE": "0.4", "RAY_DEDUP_LOGS": "0",
               # 30-product drops give a handful of judged products per attribute: too few to certify 0.9
               "PINLANDING_TARGET_PRECISION": "0.5", "PINLANDING_MIN_JOINT_CONFIDENCE": "0.2"}
        subprocess.run([VENV_BIN / "pinlanding", "run"], cwd=ROOT, env=env, check=True, timeout=1200)
        assert (data / "site" / "release.txt").read_text().strip() == "r001"
        daemon = DaemonProcess(ROOT, env, root / "daemon.log")
        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            try:
                yield Refresh(data, fashion_dir, weeks, env, instance, daemon)
            finally:
                daemon.stop()


@pytest.mark.timeout(1800)
def test_a_new_drop_is_published_though_its_run_worker_is_killed(refresh: Refresh) -> None:
    """Its scoring run's worker is killed (kill -9): the run is retried with no manual step, then
    published with r001; only its own partitions and r001's publish assets are materialized."""
    instance, daemon = refresh.instance, refresh.daemon
    started = time.time()
    daemon.start()
    write_fashion_drop(refresh.fashion_dir, refresh.landing, "drop-003", 60, 30)
    scoring = lambda: [r for r in _runs(instance, **{"dagster/partition": "drop-003"})  # noqa: E731
                       if r.dagster_run.status == STARTED and _run_worker_pid(instance, r.dagster_run.run_id)
                       and dg.AssetKey("product_embeddings") in (r.dagster_run.asset_selection or ())]
    daemon.wait_for(instance, "drop-003's scoring run to start", lambda: bool(scoring()), 600)
    refresh.killed = scoring()[0].dagster_run.run_id
    os.kill(_run_worker_pid(instance, refresh.killed), signal.SIGKILL)
    daemon.wait_for(instance, "drop-003 on the pages", lambda: refresh.pages("r001").timestamp > started, 900)
    assert instance.get_run_by_id(refresh.killed).status == dg.DagsterRunStatus.FAILURE
    retries = _runs(instance, **{"dagster/parent_run_id": refresh.killed})
    assert [r.dagster_run.status for r in retries] == [dg.DagsterRunStatus.SUCCESS], "retried, no manual step"
    assert "drop-003" in refresh.pages("r001").asset_materialization.metadata["drops_on_pages"].value
    published = refresh.pages("r001").timestamp
    before_pages = materialized_since(instance, started, published + 0.001)
    assert {a for a, p in before_pages if a in PER_DROP} <= PER_DROP - {"raw_vlm_attributes", "raw_vlm_quarantine"}
    assert {p for a, p in before_pages if a in PER_DROP} == {"drop-003"}, "no old drop re-scored"
    assert {p for a, p in before_pages if a in PUBLISH} == {"r001"}
    assert not {a for a, _ in before_pages} & (RELEASE | WEEKLY), "no vocabulary, no encoder"
    products = pl.read_parquet(refresh.data / "warehouse" / "catalog_products" / "drop-003.parquet")
    assert set(refresh.feeds("r001")["product_id"]) & set(products["product_id"]), "the new drop's products reach the feeds"
    titles = latest_record(instance, "collections", "r001").asset_materialization.metadata
    assert titles["title_cache_hits"].value > 0


@pytest.mark.timeout(1800)
def test_a_drop_landing_during_a_release_build_is_served_beside_it(refresh: Refresh) -> None:
    """drop-003's labels make a release due; while r002 is built in the learning lane (its longest run,
    so the two lanes are sure to meet), drop-005 lands and goes through the serving lane at once, never
    queued behind the build."""
    instance, daemon = refresh.instance, refresh.daemon
    building = lambda: [r for r in _runs(instance, **{LANE_TAG: "learning", "dagster/partition": "r002"})  # noqa: E731
                        if r.dagster_run.status == STARTED]
    daemon.wait_for(instance, "release r002's build", lambda: bool(building()), 900)
    write_fashion_drop(refresh.fashion_dir, refresh.landing, "drop-005", 120, 10)
    daemon.wait_for(instance, "drop-005 scored", lambda: latest_record(
        instance, "attribute_assignments", "drop-005") is not None, 900)
    served = _runs(instance, **{"dagster/partition": "drop-005", LANE_TAG: "serving"})
    assert served and all(r.start_time - r.create_timestamp.timestamp() < 60 for r in served), \
        "never queued behind learning"
    assert any(_overlaps(s, lr) for s in served for lr in _runs(instance, **{LANE_TAG: "learning"})
               if lr.start_time), "the two lanes ran side by side"


@pytest.mark.timeout(2400)
def test_new_labels_make_a_release_that_is_published_whole(refresh: Refresh) -> None:
    """drop-003's labels make a release due: r002 is cut and built, every drop re-scored in one run, and
    r002 published once every drop is scored with it, feeds and pages in one run."""
    instance, daemon = refresh.instance, refresh.daemon
    started = time.time()
    daemon.wait_for(instance, "release r002 published", lambda: refresh.pages("r002") is not None, 1500)
    drops = ("drop-001", "drop-002", "drop-003", "drop-005")
    scored = [latest_record(instance, "attribute_assignments", d) for d in drops]
    assert all(r.asset_materialization.metadata["release"].value == "r002" for r in scored)
    assert len({r.run_id for r in scored[:3]}) == 1, "the release re-scored the drops in one run"
    assert max(r.timestamp for r in scored) < refresh.pages("r002").timestamp, "published once every drop is scored"
    assert set(refresh.pages("r002").asset_materialization.metadata["drops_on_pages"].value) == set(drops)
    assert (refresh.site / "release.txt").read_text().strip() == "r002"
    vocabulary = latest_record(instance, "curated_vocabulary", "r002").asset_materialization.metadata
    assert set(drops[:3]) <= set(vocabulary["drops"].value) <= set(drops)
    assert refresh.pages("r001").timestamp < refresh.pages("r002").timestamp, "the old release is not published again"
    feeds_runs = {f.run_id for f in instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("collection_feeds"), after_timestamp=started), limit=100).records}
    for record in instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("landing_pages"), after_timestamp=started), limit=100).records:
        assert record.run_id in feeds_runs, "pages are built in one run with their feeds"
    daemon.wait_for(instance, "drop-005 labelled", lambda: latest_record(instance, "raw_vlm_attributes",
                                                                        "drop-005") is not None, 900)


@pytest.mark.timeout(1800)
def test_a_new_week_of_searches_refreshes_demand_and_the_pages_only(refresh: Refresh) -> None:
    """A new week file: the code location reloads (the week partitions grow); that week, the window and
    the pages refresh, nothing is re-trained or re-scored."""
    instance, daemon = refresh.instance, refresh.daemon
    daemon.drain(instance)
    daemon.stop()
    shutil.copy(refresh.weeks[3], refresh.data / "search_log" / refresh.weeks[3].name)
    week_started = time.time()
    daemon.start()
    new_week = "2006-03-20"
    daemon.wait_for(instance, "the new week on the pages", lambda: (
        latest_record(instance, "query_intents", new_week) is not None
        and refresh.pages("r002").timestamp > week_started), 900)
    refreshed = materialized_since(instance, week_started)
    assert ("query_intents", new_week) in refreshed and ("demand_window", new_week) in refreshed
    assert {a for a, _ in refreshed} <= WEEKLY | PUBLISH, "a new week re-trains and re-scores nothing"
    assert {p for a, p in refreshed if a in PUBLISH} == {"r002"}


@pytest.mark.timeout(1200)
def test_an_edit_of_the_overrides_file_alone_publishes_again(refresh: Refresh) -> None:
    """A merchandiser pins a product and renames a page: r002 is published again with both."""
    instance, daemon = refresh.instance, refresh.daemon
    shown = refresh.feeds("r002")
    slug = shown["collection_id"][0]
    pinned = shown.filter(pl.col("collection_id") == slug)["product_id"][-1]
    edited = time.time()
    get_paths().overrides_file.write_text(
        f'[collections.{slug}]\ntitle = "Edited By Merchandising"\npin = {{ "{pinned}" = 1 }}\n')
    daemon.wait_for(instance, "the override on the pages", lambda: refresh.pages("r002").timestamp > edited, 900)
    top = refresh.feeds("r002").filter((pl.col("collection_id") == slug) & (pl.col("rank") == 1))
    assert top.select("product_id", "override").row(0) == (pinned, "pin:1")
    assert "<h1>Edited By Merchandising</h1>" in (refresh.site / "c" / f"{slug}.html").read_text()
    assert {a for a, _ in materialized_since(instance, edited)} <= PUBLISH | {"merchandising_overrides"}


@pytest.mark.timeout(1200)
def test_the_killed_run_is_the_only_failure(refresh: Refresh) -> None:
    refresh.daemon.drain(refresh.instance)
    failed = refresh.instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=5)
    assert refresh.killed is not None and [r.dagster_run.run_id for r in failed] == [refresh.killed]


@pytest.mark.timeout(2400)
def test_the_cli_publishes_a_drop_only_with_the_release_in_service(refresh: Refresh) -> None:
    """With the daemon stopped, `pinlanding run --only` publishes a new drop with r002 (no release cut),
    and with a release r003 built but only that drop scored with it, nothing is published."""
    instance, env = refresh.instance, refresh.env
    refresh.daemon.drain(instance)
    refresh.daemon.stop()
    write_fashion_drop(refresh.fashion_dir, refresh.landing, "drop-004", 90, 30)
    subprocess.run([VENV_BIN / "pinlanding", "run", "--only", "drop-004"], cwd=ROOT, env=env, check=True, timeout=900)
    assert latest_record(instance, "attribute_assignments", "drop-004").asset_materialization.metadata[
        "release"].value == "r002"
    assert latest_record(instance, "model_release", "r003") is None
    subprocess.run([VENV_BIN / "pinlanding", "release", "--cut-only"], cwd=ROOT, env=env, check=True)
    subprocess.run([VENV_BIN / "dagster", "asset", "materialize", "-m", "pinlanding_assets.definitions",
                    "--select", "curated_vocabulary,dual_encoder,attribute_embeddings,"
                                "attribute_embedding_rejections,model_release", "--partition", "r003"],
                   cwd=ROOT, env=env, check=True, timeout=900)
    mixed = subprocess.run([VENV_BIN / "pinlanding", "run", "--only", "drop-004", "--from-stage", "scoring"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert mixed.returncode == 1 and "drop-001 (scored with r002)" in mixed.stderr, mixed.stderr[-2000:]
    assert (refresh.site / "release.txt").read_text().strip() == "r002"
    assert latest_record(instance, "landing_pages", "r003") is None
