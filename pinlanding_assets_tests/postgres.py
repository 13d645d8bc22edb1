"""A throwaway PostgreSQL server for the tests that run the daemon on a production-like instance:
Debian's PostgreSQL 15 binaries, a fresh cluster in a temporary directory, trust authentication on
127.0.0.1 and a free port; stopped and deleted afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class PostgresMissing(RuntimeError):
    pass


def _bin(name: str) -> str:
    for folder in BIN_DIRS:
        if (folder / name).is_file():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise PostgresMissing(f"PostgreSQL's {name} not found: install Debian's postgresql package (`make test` does)")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def postgres_server(database: str = "dagster") -> Iterator[str]:
    """A running server with an empty ``database``; yields its URL. As root, the server runs as the
    ``postgres`` user (PostgreSQL refuses root), in a directory that user owns."""
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    folder = Path(tempfile.mkdtemp(prefix="pinlanding-pg-"))
    data, port = folder / "data", _free_port()
    if as_root:
        shutil.chown(folder, "postgres", "postgres")
    try:
        subprocess.run([*run_as, _bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*run_as, _bin("pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-o",
                        f"-h 127.0.0.1 -p {port} -k {folder}", "start"], check=True, capture_output=True, timeout=120)
        try:
            subprocess.run([*run_as, _bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database],
                           check=True, capture_output=True, timeout=60)
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{database}"
        finally:
            subprocess.run([*run_as, _bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True,
                           timeout=120)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
