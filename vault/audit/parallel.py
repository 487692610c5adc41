"""The fast passes of a full verification on PostgreSQL (vault/audit/scan/), spread over
processes: the chains are independent of one another, so each worker process checks the
chains of one range of keys while this process checks the tree. A smaller log, for which
starting processes would cost more than it saves, has its chains checked by a thread of
this process on a second connection.

Every process reads the same snapshot: this one's REPEATABLE READ transaction exports it
(``pg_export_snapshot()``) and each other connection adopts it (``SET TRANSACTION
SNAPSHOT``) before reading anything, so the run sees one state of the log however many servers are writing.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import IO, Any, cast

import psycopg
from psycopg.conninfo import make_conninfo

from vault.audit.scan import ChainTally, KeyRange, check_chains, check_tree, repository
from vault.audit.scan_worker import run as run_job
from vault.db import Session

log = logging.getLogger(__name__)

# Starting a worker costs about 0.2 s of CPU (an interpreter and psycopg): below this many
# entries one process (two threads, GIL-bound) is faster.
PARALLEL_FROM = 50_000

# The tree is checked in rounds of this many batches: each round fetches its stored nodes
# with one query per level, so larger rounds mean fewer queries.
_TREE_ROUND = 4


# Each audit log's signed roots by tree size, and the size its tree head records.
Trees = Mapping[int, tuple[Mapping[int, Set[bytes]], int]]


@dataclass
class Scan:
    chains: ChainTally
    # Each log's tree size when intact, else None.
    leaves: dict[int, int | None]


@dataclass
class _Worker:
    keys: KeyRange
    process: subprocess.Popen[bytes]
    errors: IO[bytes]


def scan_log(session: Session, trees: Trees, *, workers: int, batch: int) -> Scan:
    """The chains and every log's tree as ``session``'s snapshot sees it."""
    bound = session.connection()
    connection = cast(psycopg.Connection[Any], bound.connection.driver_connection)
    ranges, entries = _key_ranges(connection, workers)
    job = {
        "dsn": _same_server(connection),
        "snapshot": repository.export_snapshot(connection),
        "batch": batch,
    }
    if len(ranges) < 2 or entries < PARALLEL_FROM:
        return _side_by_side(connection, job, trees, batch)
    started: list[_Worker] = []
    here: list[KeyRange] = []
    try:
        for keys in ranges:
            worker = _start(job, keys)
            if worker is None:
                here.append(keys)
            else:
                started.append(worker)
        leaves = _check_trees(connection, trees, batch)
        tallies = [check_chains(connection, keys, batch) for keys in here]
        tallies += [_finish(worker, connection, batch) for worker in started]
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
            if worker.process.stdout is not None:
                worker.process.stdout.close()
            worker.errors.close()
    total = ChainTally()
    for tally in tallies:
        total.entries += tally.entries
        total.chains += tally.chains
        total.intact = total.intact and tally.intact
    return Scan(total, leaves)


def _check_trees(
    connection: psycopg.Connection[Any], trees: Trees, batch: int
) -> dict[int, int | None]:
    return {
        log: check_tree(connection, roots, recorded, _TREE_ROUND * batch, log)
        for log, (roots, recorded) in trees.items()
    }


def _side_by_side(
    connection: psycopg.Connection[Any], job: dict[str, Any], trees: Trees, batch: int
) -> Scan:
    """One process: the chains in a thread, on a connection of its own in the same
    snapshot, the tree in this one, so that each computes while the other's query runs."""
    tallies: list[ChainTally] = []

    def chains() -> None:
        try:
            tallies.append(run_job({**job, "lower": None, "upper": None}))
        except Exception as error:  # noqa: BLE001 - whatever it was, the chains get checked below
            log.warning("cannot check the audit chains on a second connection (%s)", error)

    thread = threading.Thread(target=chains, name="audit-verify-chains", daemon=True)
    thread.start()
    try:
        leaves = _check_trees(connection, trees, batch)
    finally:
        thread.join()
    if not tallies:
        tallies.append(check_chains(connection, (None, None), batch))
    return Scan(tallies[0], leaves)


def _key_ranges(connection: psycopg.Connection[Any], parts: int) -> tuple[list[KeyRange], int]:
    """Up to ``parts`` consecutive key ranges, and about how many entries the log holds."""
    rows = repository.split_points(connection, parts)
    if not rows:
        return [(None, None)], 0
    bounds: list[str | None] = [None] + [key for key, _ in rows[1:]] + [None]
    return list(itertools.pairwise(bounds)), int(rows[0][1])


def _start(job: dict[str, Any], keys: KeyRange) -> _Worker | None:
    """A worker for the chains of ``keys``, or None when none can be started here (the
    caller then checks them itself)."""
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - scan_log closes it, after the worker
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "vault.audit.scan_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    except OSError as error:
        errors.close()
        log.warning("cannot start an audit verification worker (%s): checking here", error)
        return None
    assert process.stdin is not None
    try:
        with process.stdin:
            process.stdin.write(json.dumps({**job, "lower": keys[0], "upper": keys[1]}).encode())
    except BrokenPipeError:
        pass  # It exited without reading its job: _finish finds out and does the work.
    return _Worker(keys, process, errors)


def _finish(worker: _Worker, connection: psycopg.Connection[Any], batch: int) -> ChainTally:
    assert worker.process.stdout is not None
    output = worker.process.stdout.read()
    worker.process.wait()
    try:
        if worker.process.returncode != 0:
            raise ValueError(f"exit status {worker.process.returncode}")
        result = json.loads(output)
        return ChainTally(int(result["entries"]), int(result["chains"]), bool(result["intact"]))
    except (ValueError, KeyError, TypeError) as error:
        worker.errors.seek(0)
        detail = worker.errors.read()[-2000:].decode(errors="replace")
        log.warning(
            "audit verification worker failed (%s), checking its range here: %s", error, detail
        )
        return check_chains(connection, worker.keys, batch)


def _same_server(connection: psycopg.Connection[Any]) -> str:
    """A connection string to the very server ``connection`` is on: the snapshot exists
    only there, and a multi-host URL could lead a worker elsewhere."""
    info = connection.info
    return make_conninfo(info.dsn, port=str(info.port), password=info.password or None)
