"""One process of a parallel ``vault audit verify``: checks the chains of one key range
in the snapshot the coordinating process exported, and prints its tally as JSON. (``run``
is also what checks the chains of a smaller log, in a thread of the coordinating process.)

Run as ``python -m vault.audit.scan_worker``; the job comes on standard input (so the
connection string, which may hold a password, is never on a command line):
``{"dsn": ..., "snapshot": ..., "lower": ..., "upper": ..., "batch": ...}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import psycopg

from vault.audit.scan import ChainTally, KeyRange, check_chains
from vault.audit.scan.repository import adopt_snapshot


def run(job: dict[str, Any]) -> ChainTally:
    with psycopg.connect(job["dsn"]) as connection:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        # The first statement of the transaction: from here on it reads exactly what
        # the coordinator reads.
        adopt_snapshot(connection, job["snapshot"])
        keys: KeyRange = (job["lower"], job["upper"])
        tally = check_chains(connection, keys, int(job["batch"]))
        connection.rollback()
    return tally


def main() -> None:
    tally = run(json.load(sys.stdin))
    json.dump(
        {"entries": tally.entries, "chains": tally.chains, "intact": tally.intact}, sys.stdout
    )


if __name__ == "__main__":
    main()
