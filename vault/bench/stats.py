"""Latency summaries and process measurements (Linux /proc)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (the value at or above ``fraction`` of the samples)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(fraction * len(ordered) + 0.999999) - 1))
    return ordered[rank]


@dataclass(frozen=True)
class Latencies:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Latencies:
        return cls(
            len(seconds),
            round(percentile(seconds, 0.50) * 1000, 2),
            round(percentile(seconds, 0.99) * 1000, 2),
            round(max(seconds, default=0.0) * 1000, 2),
        )


def rss_mb(pid: int) -> float:
    """Resident memory of a process now, in MB (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0.0
    return int(fields[1]) * PAGE_SIZE / 1e6


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name may hold spaces; the fields after it are fixed.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time every CPU of the machine has spent not idle so far (/proc/stat): the whole
    budget the vault, PostgreSQL, the load generator and the kernel share."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    # user nice system idle iowait irq softirq steal (guest time is counted in user).
    ticks = [int(value) for value in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


def postgres_cpu() -> dict[int, float]:
    """CPU time used so far by each PostgreSQL process of this machine (none where the
    database is remote)."""
    found: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.index("(") + 1 : text.rindex(")")] == "postgres":
            fields = text[text.rindex(")") + 2 :].split()
            found[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


def postgres_cpu_since(before: dict[int, float]) -> float:
    """CPU time PostgreSQL's processes used since ``before``: what the ones still alive
    added, and all of what new ones used. Backends that exited in between are not counted
    (a lower bound); the vault's pooled connections and the floor's live through what is
    measured."""
    return sum(used - before.get(pid, 0.0) for pid, used in postgres_cpu().items())


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


class RssSampler:
    """Samples the resident memory of some processes in the background; ``peak_mb`` is the
    largest single process seen, ``baseline_mb`` the largest at the start."""

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        self.pids = pids
        self.interval = interval
        self.baseline_mb = max((rss_mb(pid) for pid in pids), default=0.0)
        self.peak_mb = self.baseline_mb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in self.pids:
                self.peak_mb = max(self.peak_mb, rss_mb(pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        for pid in self.pids:
            self.peak_mb = max(self.peak_mb, rss_mb(pid))
