"""The cluster switch for real: an external Ray head and a Spark standalone master + worker on
localhost, joined by setting RAY_ADDRESS and PINLANDING_SPARK_MASTER and running the main command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pinlanding_assets_tests.conftest import free_port, wait_for_port

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ray_head() -> Iterator[str]:
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    # A throwaway loopback cluster: Ray 2.60's default token auth is switched off for it (README: clusters).
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run(
        [VENV_BIN / "ray", "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}"],
        check=True, env=env, capture_output=True,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([VENV_BIN / "ray", "stop", "--force"], env=env, capture_output=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def spark_standalone(tmp_path: Path) -> Iterator[str]:
    spark_class = VENV_BIN / "spark-class"
    port = free_port()
    env = {**os.environ, "SPARK_LOG_DIR": str(tmp_path / "spark-logs"), "PYSPARK_PYTHON": sys.executable}
    master = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(free_port())],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"spark://127.0.0.1:{port}"
    worker = None
    try:
        wait_for_port(port)
        worker = subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--cores", "1", "--memory", "2g",
             "--webui-port", str(free_port()), "--work-dir", str(tmp_path / "spark-work")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        time.sleep(3)
        yield url
    finally:
        for process in (worker, master):
            if process is not None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:  # a worker still stopping its executors
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=30)


def test_main_command_runs_on_external_ray_and_spark(
    ray_head: str, spark_standalone: str, project_dirs: Path, fashion_dir: Path
) -> None:
    env = {
        **os.environ,
        "PINLANDING_DATA_DIR": str(project_dirs),
        "RAY_ADDRESS": ray_head,
        "RAY_AUTH_MODE": "disabled",
        "PINLANDING_SPARK_MASTER": spark_standalone,
        "PYSPARK_PYTHON": sys.executable,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        # the whole graph runs: keep the model stages small and fast
        "PINLANDING_LLM": "qwen2.5-coder-0.5b-instruct-q4",
        "PINLANDING_ATTRIBUTE_SAMPLE": "6",
        "PINLANDING_MIN_SUPPORT": "1",
        "PINLANDING_ENCODER_PRODUCTS": "300",
        "PINLANDING_MAX_COLLECTIONS": "20",
        # a few labelled products per attribute: too few to certify the default precision target
        "PINLANDING_TARGET_PRECISION": "0.5",
        "PINLANDING_MIN_JOINT_CONFIDENCE": "0.2",
    }
    subprocess.run([VENV_BIN / "pinlanding", "make-drops", "--drops", "8"], cwd=ROOT, env=env, check=True)
    subprocess.run([VENV_BIN / "pinlanding", "run", "--only", "drop-007"], cwd=ROOT, env=env, check=True, timeout=900)
    profile = pl.read_parquet(project_dirs / "warehouse" / "catalog_profile" / "drop-007.parquet")
    assert profile["products"].sum() > 400
    embeddings = pl.read_parquet(project_dirs / "warehouse" / "product_embeddings" / "drop-007.parquet")
    assert embeddings.height == profile["products"].sum(), "the Ray encoder job ran on the external cluster"
    with dg.DagsterInstance.get() as instance:
        spark_event = instance.get_latest_materialization_event(dg.AssetKey("catalog_profile"))
        ray_event = instance.get_latest_materialization_event(dg.AssetKey("catalog_image_features"))
        feeds_event = instance.get_latest_materialization_event(dg.AssetKey("collection_feeds"))
    assert spark_event.asset_materialization.metadata["spark_master"].value == spark_standalone
    feeds = feeds_event.asset_materialization.metadata
    assert feeds["spark_master"].value == spark_standalone and feeds["published"].value > 0
    [release] = [p.stem for p in (project_dirs / "warehouse" / "model_release").glob("*.parquet")]
    comparison = pl.read_parquet(project_dirs / "warehouse" / "collection_comparison" / f"{release}.parquet")
    assert comparison["system"].to_list() == ["content_first", "search_log_baseline"]
    pages = sorted((project_dirs / "site" / "c").glob("*.html"))
    assert len(pages) == feeds["published"].value and (project_dirs / "site" / "sitemap.xml").is_file()
    assert ray_event.asset_materialization.metadata["ray_cluster"].value == f"Ray cluster at {ray_head}"
