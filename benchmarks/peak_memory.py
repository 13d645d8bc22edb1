"""Peak memory of a process tree, for the benchmarks: this process and every descendant (Ray's
raylet and workers, the Spark JVM), sampled from /proc (Linux). PSS, not RSS: pages shared between
processes (Ray's object store, libraries) are split between them instead of counted in each."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _proportional_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_tree(root: int | None = None) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root or os.getpid()}, [root or os.getpid()]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return tree


def tree_mib() -> float:
    return sum(_proportional_kib(pid) for pid in process_tree()) / 1024


def own_mib() -> float:
    return _proportional_kib(os.getpid()) / 1024


class PeakMemory:
    """Peak PSS of the whole tree and of this process alone while the block runs (sampled every 0.25 s)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.tree_peak_mib = 0.0
        self.own_peak_mib = 0.0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.tree_peak_mib = max(self.tree_peak_mib, tree_mib())
        self.own_peak_mib = max(self.own_peak_mib, own_mib())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
