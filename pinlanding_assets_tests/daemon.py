"""The Dagster daemon for the daemon test and the refresh benchmark: started and stopped on the
project's workspace, waited on, and asked what a refresh materialized (the evidence that it touched
only what it had to)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from pinlanding_assets.refresh.stages import STAGES

ASSETS = sorted({name for stage in STAGES for name in stage.names})


def materialized_since(instance: dg.DagsterInstance, since: float, until: float | None = None) -> set[tuple[str, str]]:
    """(asset, partition) pairs materialized after ``since`` (and before ``until``)."""
    found = set()
    for name in ASSETS:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), after_timestamp=since, before_timestamp=until),
            limit=10000).records
        found |= {(name, r.asset_materialization.partition) for r in records}
    return found


class RefreshTimeout(TimeoutError):
    pass


class DaemonProcess:
    """`dagster-daemon run` on the project's workspace in its own process group (its code server
    outlives a plain SIGTERM of the parent alone), logging to a file."""

    def __init__(self, root: Path, env: dict[str, str], log: Path) -> None:
        self.root, self.env, self.log, self.process = root, env, log, None

    def start(self) -> None:
        handle = self.log.open("a")
        daemon = Path(sys.executable).parent / "dagster-daemon"
        self.process = subprocess.Popen([daemon, "run", "-w", str(self.root / "workspace.yaml")], cwd=self.root,
                                        env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def drain(self, instance: dg.DagsterInstance, timeout: float = 900) -> float:
        """Wait until no run is queued or running (stopping the daemon mid-run interrupts that run)."""
        busy = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED]
        return self.wait_for(instance, "the runs in flight to finish",
                             lambda: not instance.get_run_records(dg.RunsFilter(statuses=busy), limit=1), timeout)

    def wait_for(self, instance: dg.DagsterInstance, what: str, done: Callable[[], bool], timeout: float) -> float:
        """Seconds until ``done()``; on timeout, the failed runs and the daemon log's tail in the error."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if done():
                return time.monotonic() - started
            time.sleep(2)
        failed = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=5)
        raise RefreshTimeout(f"timed out after {timeout:.0f}s waiting for {what}; failed runs: "
                             f"{[r.dagster_run.run_id for r in failed]}\n{self.log.read_text()[-3000:]}")
