"""The vault behind PgBouncer in transaction mode, where each transaction may run on a
different server connection: a slice of the API tests passes through it unchanged (with
prepared statements off, as PgBouncer before 1.21 needs), and the vault keeps no session
state that such a pooler would lose between transactions."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import breaks_session_pooling
from tests.hardening.pooler import PgBouncer
from vault.db import make_engine

ROOT = Path(__file__).resolve().parents[2]
# The write path (ITI-65, ITI-105), search and paging, patients, the audit log and its
# atomicity with the access it records: what every request of a vault process does.
SLICE = (
    "tests/documents/test_endpoints.py",
    "tests/documents/test_write_path.py",
    "tests/documents/test_search_paging.py",
    "tests/patients/test_endpoints.py",
    "tests/audit/test_endpoints.py",
    "tests/audit/test_atomicity.py",
)


# What lives in a server session and so breaks behind a transaction pooler, as the start
# of a statement the vault sends: a session SET (SET LOCAL and SET TRANSACTION end with
# the transaction), session-level advisory locks, LISTEN, SQL-level PREPARE, cursors WITH
# HOLD, temporary tables. The rule itself lives in tests/conftest.py, which records
# every statement that breaks it while the slice runs through the pooler.
@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    bouncer = PgBouncer(pool_size=2)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()


@pytest.mark.slow
def test_a_slice_of_the_api_tests_passes_through_pgbouncer_in_transaction_mode(
    pgbouncer: PgBouncer, tmp_path: Path
) -> None:
    before = sum(pgbouncer.transactions().values())
    offenders = tmp_path / "session-state.txt"
    done = subprocess.run(  # noqa: PLW1510 - the exit code is checked with the output
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SLICE],
        cwd=ROOT,
        env={
            **os.environ,
            "VAULT_TEST_POOLER": f"127.0.0.1:{pgbouncer.port}",
            "VAULT_TEST_POOLER_OFFENDERS": str(offenders),
        },
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]
    assert not offenders.exists() or not offenders.read_text(), offenders.read_text()
    # The services really went through PgBouncer, and many times over its small pool.
    assert sum(pgbouncer.transactions().values()) - before > 50 * pgbouncer.pool_size


def test_prepared_statements_are_what_a_transaction_pooler_breaks_and_turning_them_off_holds(
    pgbouncer: PgBouncer, database_url: str
) -> None:
    """Two client connections over one server connection, each repeating a statement past
    psycopg's prepare threshold: with prepared statements on, one finds the other's (or
    misses its own) on the server connection they share."""
    small = PgBouncer(pool_size=1)
    small.start()
    try:
        outcomes = {}
        for prepared in (True, False):
            engine = make_engine(small.url(database_url), prepared_statements=prepared)
            try:
                with engine.connect() as first, engine.connect() as second:
                    try:
                        for _ in range(8):
                            for connection in (first, second):
                                connection.execute(text("SELECT count(*) FROM patients"))
                                connection.commit()
                        outcomes[prepared] = "held"
                    except DBAPIError as error:
                        outcomes[prepared] = type(error.orig).__name__
            finally:
                engine.dispose()
    finally:
        small.stop()
    assert outcomes[False] == "held"
    assert outcomes[True] != "held"


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT pg_advisory_lock(42)",
        "SELECT pg_try_advisory_lock_shared(42)",
        "LISTEN audit_events",
        "SET search_path = vault",
        "set statement_timeout to 5000",
        "SET SESSION statement_timeout = 5000",
        "PREPARE q AS SELECT 1",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "CREATE TEMPORARY TABLE t (x int)",
    ],
)
def test_the_session_state_rule_catches_each_kind_it_names(statement: str) -> None:
    assert breaks_session_pooling(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT pg_advisory_xact_lock(42)",
        "SET LOCAL statement_timeout = 5000",
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
        "INSERT INTO t VALUES (1) ON CONFLICT (k) DO UPDATE SET last_seq = EXCLUDED.last_seq",
        "UPDATE t SET x = 1 WHERE listen = 2",
    ],
)
def test_the_session_state_rule_lets_transaction_scoped_statements_pass(statement: str) -> None:
    assert not breaks_session_pooling(statement)
