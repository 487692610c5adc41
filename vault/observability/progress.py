"""Progress of long-running commands (key rotation, audit verification, export, backup,
restore, bench): a rich progress bar in a terminal, plain lines otherwise (cron, CI, logs).

Written to stderr, so that a command's result on stdout stays machine-readable::

    with progress("rewrapping patient keys", total=count) as bar:
        for batch in batches:
            ...
            bar.advance(len(batch))
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Tracker(Protocol):
    def advance(self, amount: int = 1) -> None: ...


class _RichTracker:
    def __init__(self, bar: Progress, description: str, total: int | None) -> None:
        self._bar = bar
        self._task = bar.add_task(description, total=total)

    def advance(self, amount: int = 1) -> None:
        self._bar.advance(self._task, amount)


class _LineTracker:
    """One line at the start, one each time another tenth is done (or every ``every``
    items when the total is unknown), one at the end."""

    def __init__(self, stream: TextIO, description: str, total: int | None, every: int) -> None:
        self._stream = stream
        self._description = description
        self._total = total
        self._every = every
        self._done = 0
        self._next = 0
        self._plan()

    def _plan(self) -> None:
        step = max(1, self._total // 10) if self._total else self._every
        self._next = (self._done // step + 1) * step

    def _line(self, text: str) -> None:
        self._stream.write(f"{self._description}: {text}\n")
        self._stream.flush()

    def start(self) -> None:
        self._line(f"0/{self._total}" if self._total is not None else "started")

    def advance(self, amount: int = 1) -> None:
        self._done += amount
        if self._done >= self._next:
            self._line(self._status())
            self._plan()

    def finish(self) -> None:
        self._line(f"done, {self._done}")

    def _status(self) -> str:
        if self._total:
            return f"{self._done}/{self._total} ({100 * self._done // self._total}%)"
        return str(self._done)


@contextmanager
def progress(
    description: str,
    total: int | None = None,
    *,
    stream: TextIO | None = None,
    terminal: bool | None = None,
    every: int = 1000,
) -> Iterator[Tracker]:
    output = stream or sys.stderr
    if terminal is None:
        isatty = getattr(output, "isatty", None)
        terminal = bool(isatty and isatty())
    if terminal:
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(file=output, force_terminal=True)) as bar:
            yield _RichTracker(bar, description, total)
        return
    tracker = _LineTracker(output, description, total, every)
    tracker.start()
    yield tracker
    tracker.finish()
