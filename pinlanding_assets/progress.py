"""Progress lines for long steps, so a run's log in the Dagster UI says where it is."""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    """Counts work done and logs "<step>: <done>/<total> <unit> (<share>), <rate>/s" at most every
    ``every_s`` seconds, and once more when the total is reached."""

    def __init__(self, log: Callable[[str], None] | None, step: str, total: int, unit: str = "products",
                 every_s: float = 20.0) -> None:
        self.log, self.step, self.total, self.unit, self.every_s = log, step, total, unit, every_s
        self.done = 0
        self.started = self._last = time.perf_counter()

    def add(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if self.log and (now - self._last >= self.every_s or self.done >= self.total):
            self._last = now
            rate = self.done / (now - self.started) if now > self.started else 0.0
            share = f" ({self.done / self.total:.0%})" if self.total else ""
            self.log(f"{self.step}: {self.done}/{self.total} {self.unit}{share}, {rate:.2f} {self.unit}/s")

    def counted(self, function: Callable) -> Callable:
        """``function`` wrapped so each call counts one unit done."""

        def wrapped(*args, **kwargs):
            result = function(*args, **kwargs)
            self.add(1)
            return result

        return wrapped
