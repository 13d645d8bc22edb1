"""One settings surface, layers that point one way, the instance's checked-in configuration, the CLI's
one-line errors."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import dagster as dg
import pytest
import yaml

from pinlanding_assets.cli import main
from pinlanding_assets.deployment import resources_for
from pinlanding_assets.instance import PROJECT_DAGSTER_YAML, ensure_dagster_home, merged_instance_config
from pinlanding_assets.refresh.conditions import LANE_TAG
from pinlanding_assets.settings import DEFAULTS, PROJECT_ROOT, QualityGates, SettingError, load_settings

PACKAGES = ("pinlanding_assets", "resources")


def _sources(package: str) -> list[Path]:
    return sorted((PROJECT_ROOT / package).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_settings_are_typed_with_defaults_and_derived_paths(tmp_path: Path) -> None:
    settings = load_settings({"PINLANDING_DATA_DIR": str(tmp_path), "PINLANDING_MIN_FEED_SIZE": "12"})
    assert settings.paths.warehouse_dir == tmp_path / "warehouse"
    assert settings.paths.partition_path("collections", "r001") == tmp_path / "warehouse/collections/r001.parquet"
    assert settings.paths.feed_rows_dir("r001") == tmp_path / "warehouse/published_feeds/r001"
    assert settings.paths.open_clip_cache == tmp_path / "models/open_clip"
    assert settings.deployment == "local" and settings.max_collections == int(DEFAULTS["PINLANDING_MAX_COLLECTIONS"])
    gates = settings.gates
    assert isinstance(gates, QualityGates) and gates.min_feed_size == 12 and gates.max_feed_size == 100
    assert settings.models.judge_llm == settings.models.llm, "the judge uses the attribute LLM unless set"
    assert load_settings({"RAY_ADDRESS": "ray://head:10001"}).deployment == "cluster"


@pytest.mark.parametrize("environ, message", [
    ({"PINLANDING_MIN_FEED_SIZE": "ten"}, "PINLANDING_MIN_FEED_SIZE='ten' is not an integer"),
    ({"PINLANDING_JUDGE_THRESHOLD": "high"}, "PINLANDING_JUDGE_THRESHOLD='high' is not a number"),
    ({"PINLANDING_DEPLOYMENT": "moon"}, "PINLANDING_DEPLOYMENT='moon'"),
    ({"PINLANDING_MAX_QUARANTINE_RATE": "7"}, r"PINLANDING_MAX_QUARANTINE_RATE='7' is out of range: it must be between 0 and 1"),
    ({"PINLANDING_MAX_FEED_SIZE": "-5"}, r"PINLANDING_MAX_FEED_SIZE='-5' is out of range: it must be at least 1"),
    ({"PINLANDING_DEMAND_WEEKS": "0"}, r"PINLANDING_DEMAND_WEEKS='0' is out of range"),
    ({"PINLANDING_MIN_FEED_SIZE": "500"}, "PINLANDING_MIN_FEED_SIZE=500 is above PINLANDING_MAX_FEED_SIZE=100"),
])
def test_bad_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingError, match=message):
        load_settings(environ)


def test_only_the_settings_module_touches_the_environment() -> None:
    readers = [p.relative_to(PROJECT_ROOT) for package in PACKAGES for p in _sources(package)
               if "os.environ" in p.read_text() or "getenv" in p.read_text()]
    assert readers == [Path("pinlanding_assets/settings.py")]


def test_settings_are_read_by_the_entry_points_alone() -> None:
    """Assets, checks and sensors get paths and settings from the ``project`` resource; only the entry
    points (the code location, the CLI, the instance setup) read them."""
    entry_points = {"settings.py", "definitions.py", "deployment.py", "cli.py", "instance.py"}
    for path in _sources("pinlanding_assets"):
        calls = {node.func.id for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        if path.parent.name == "pinlanding_assets" and path.name in entry_points:
            continue
        assert not calls & {"load_settings", "get_paths"}, f"{path} reads the settings itself"


def test_layers_point_one_way() -> None:
    for path in _sources("resources"):
        assert not any(name.split(".")[0] == "pinlanding_assets" for name in _imported(path)), path
    for package in PACKAGES:
        for path in _sources(package):
            assert not any(name.startswith("dagster._") for name in _imported(path)), path


def test_domains_use_each_other_through_public_names() -> None:
    for path in _sources("pinlanding_assets"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pinlanding_assets."):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path} imports {private} from {node.module}"


def test_resources_are_built_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings({"PINLANDING_DATA_DIR": str(tmp_path), "PINLANDING_MAX_QUARANTINE_RATE": "0.05"})
    resources = resources_for(settings)
    assert set(resources) == {"ray_pool", "pyspark", "io_manager", "models", "quality_gates", "project"}
    assert resources["project"] is settings, "assets reach paths and settings through the project resource"
    assert resources["quality_gates"].max_quarantine_rate == 0.05
    assert resources["models"].model_cache_dir == str(tmp_path / "models")
    assert resources["io_manager"].base_dir == str(tmp_path / "warehouse")


def test_instance_config_is_copied_then_merged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = yaml.safe_load(PROJECT_DAGSTER_YAML.read_text())
    runs = project["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] == 2 and {(lane["key"], lane["value"], lane["limit"]) for lane in
                                                 runs["tag_concurrency_limits"]} == {
        (LANE_TAG, "serving", 1), (LANE_TAG, "learning", 1)}, "one run per lane"
    assert project["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert ensure_dagster_home() == home
    assert yaml.safe_load((home / "dagster.yaml").read_text()) == project
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled and instance.run_retries_enabled and instance.run_retries_max_retries == 2
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: true\nconcurrency:\n  pools:\n    default_limit: 2\n")
    ensure_dagster_home()
    merged = yaml.safe_load((home / "dagster.yaml").read_text())
    assert merged["telemetry"] == {"enabled": True}, "a value the user set is kept"
    assert merged["concurrency"] == {"pools": {"default_limit": 2}, "runs": runs}
    assert merged_instance_config({"a": {"b": 1}}, {"a": 5}) == {"a": 5}


def test_an_old_run_queue_setting_is_migrated_and_the_instance_loads(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """What this project wrote before: the queue limit under run_coordinator (invalid beside concurrency.runs)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster.core.run_coordinator\n"
        "  class: QueuedRunCoordinator\n  config:\n    max_concurrent_runs: 3\n    dequeue_interval_seconds: 5\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ensure_dagster_home()
    merged = yaml.safe_load((home / "dagster.yaml").read_text())
    assert merged["concurrency"]["runs"]["max_concurrent_runs"] == 3, "the user's limit moves, not ours"
    assert merged["run_coordinator"]["config"] == {"dequeue_interval_seconds": 5}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_coordinator is not None


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--catalog", "{empty}"], "no product table"),
    (["evaluate", "--catalog", "{missing}"], "is not a directory"),
    (["run", "--only", "drop-404"], "not ready in"),
    (["release"], "no drop has VLM attributes yet"),
    (["serve", "--dir", "{site}", "--port", "{busy}"], "cannot listen on 127.0.0.1:"),
])
def test_cli_errors_are_one_line(argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PINLANDING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PINLANDING_SHARED_DATA", str(tmp_path / "no-shared-data"))
    (tmp_path / "empty").mkdir()
    landing = tmp_path / "data" / "landing" / "drop-001"
    landing.mkdir(parents=True)
    (landing / "_READY").write_text("ready\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html>")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    argv = [a.format(empty=tmp_path / "empty", missing=tmp_path / "missing", site=site,
                     busy=busy.getsockname()[1]) for a in argv]
    warehouse = tmp_path / "data" / "warehouse"
    for table in ("model_release", "dual_encoder", "curated_vocabulary"):
        (warehouse / table).mkdir(parents=True, exist_ok=True)
        (warehouse / table / "r001.parquet").write_bytes(b"")
    with busy:
        code = main(argv)
    error = capsys.readouterr().err.strip()
    assert code == 2 and message in error and "Traceback" not in error and "\n" not in error, error
    if argv[0] == "release":
        with dg.DagsterInstance.get() as instance:
            assert instance.get_dynamic_partitions("model_releases") == [], "nothing is registered when nothing can be built"


def test_out_of_range_port_is_refused_by_the_parser(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", "80000"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "must be between 0 and 65535, got 80000" in error and "Traceback" not in error


def test_cli_refuses_a_missing_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PINLANDING_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "catalog.csv").write_text("id,productDisplayName\n")
    assert main(["evaluate", "--catalog", str(tmp_path / "catalog")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "no model release found: run `pinlanding run` first"


def test_the_cli_reads_the_week_partitions_only_after_making_the_demo_inputs() -> None:
    """The search weeks are fixed when pinlanding_assets.partitions is imported, from the log folder's
    files: the CLI must make those files first (an import of it in `main` once left every week unknown
    to `make run` on a fresh machine)."""
    import subprocess
    import sys

    probe = ("import sys; from pinlanding_assets import cli; "
             "from pinlanding_assets.cli import build_parser; build_parser(); "
             "import inspect; src = inspect.getsource(cli.main); "
             "assert 'pinlanding_assets.partitions' not in sys.modules, 'partitions imported by the CLI module'; "
             "assert 'releases' not in src and 'partitions' not in src, 'main imports the partitions'")
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=PROJECT_ROOT)
