"""Progress lines for long steps: done / total, rate and ETA, in the run's logs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


def progress_line(label: str, done: float, total: float, elapsed: float, unit: str) -> str:
    """``label: 120/400 samples (30%), 12.0 samples/s, ETA 23s`` (ETA unknown before any work)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    share = f" ({100 * done / total:.0f}%)" if total else ""
    eta = (total - done) / rate if rate > 0 and total else math.nan
    eta_text = "?" if math.isnan(eta) else format_seconds(eta)
    return f"{label}: {done:g}/{total:g} {unit}{share}, {rate:.1f} {unit}/s, ETA {eta_text}"


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 120:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 120:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressLog:
    """Call with the amount done; logs at most every ``min_interval`` seconds, and at the end."""

    def __init__(
        self,
        log: Callable[[str], None],
        label: str,
        total: float,
        unit: str,
        min_interval: float = 5.0,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.log, self.label, self.total, self.unit = log, label, total, unit
        self.min_interval, self.clock = min_interval, clock
        self.started = clock()
        self.last_logged = -math.inf

    def __call__(self, done: float, extra: str = "") -> None:
        now = self.clock()
        finished = bool(self.total) and done >= self.total
        if not finished and now - self.last_logged < self.min_interval:
            return
        self.last_logged = now
        line = progress_line(self.label, done, self.total, now - self.started, self.unit)
        self.log(f"{line}{'; ' + extra if extra else ''}")
