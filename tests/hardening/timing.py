"""Comparing the cost of two kinds of request, as a timing attacker would: by ratio and
overlap, never against an absolute time (the machine may be slow or busy).

The two kinds are interleaved (ABAB... then BABA...), so drift in the machine's load
touches both alike; warmed up first (caches, compiled statements, the connection pool);
compared by medians, which one slow outlier does not move, and by the overlap of their
interquartile ranges.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

WARM_UP = 20
SAMPLES = 200
# Medians within 10 %.
MAX_RATIO = 1.10


@dataclass(frozen=True)
class Comparison:
    label: str
    medians: tuple[float, float]
    quartiles: tuple[tuple[float, float], tuple[float, float]]

    @property
    def ratio(self) -> float:
        low, high = sorted(self.medians)
        return high / low

    @property
    def overlapping(self) -> bool:
        (a_q1, a_q3), (b_q1, b_q3) = self.quartiles
        return a_q1 <= b_q3 and b_q1 <= a_q3

    @property
    def indistinguishable(self) -> bool:
        return self.ratio <= MAX_RATIO and self.overlapping

    def __str__(self) -> str:
        a, b = (f"{m * 1e3:.2f} ms" for m in self.medians)
        return (
            f"{self.label}: medians {a} / {b}, ratio {self.ratio:.3f}, overlap {self.overlapping}"
        )


def compare(label: str, first: Callable[[], object], second: Callable[[], object]) -> Comparison:
    for _ in range(WARM_UP):
        first()
        second()
    samples: tuple[list[float], list[float]] = ([], [])
    calls = (first, second)
    for n in range(SAMPLES):
        # Alternate which kind goes first, so neither always follows the other.
        order = (0, 1) if n % 2 == 0 else (1, 0)
        for which in order:
            start = time.perf_counter()
            calls[which]()
            samples[which].append(time.perf_counter() - start)
    return Comparison(
        label,
        (statistics.median(samples[0]), statistics.median(samples[1])),
        (_quartiles(samples[0]), _quartiles(samples[1])),
    )


def _quartiles(values: list[float]) -> tuple[float, float]:
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


def indistinguishable(
    label: str, first: Callable[[], object], second: Callable[[], object]
) -> Comparison:
    """Measure; measure once more if the first run tells the kinds apart. A real oracle is
    systematic and shows in both runs; a burst of load from another process on a shared
    2-core machine lands in one window, not in two. Returns the last comparison."""
    result = compare(label, first, second)
    if not result.indistinguishable:
        print(f"retrying after: {result}")
        result = compare(label, first, second)
    print(result)
    return result
