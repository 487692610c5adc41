"""CPU per entry of the reads' committer's append (``AuditService.append_many``), for
groups of 1, 4, 16 and 64 records, in this process and in its PostgreSQL backend.

    .venv/bin/python benchmarks/audit_group_append.py [--one-by-one] [--entries 16000]

``--one-by-one`` appends each group's records with ``append``, one after the other, as the
committer did before groups were appended at once. Runs in a database of its own, created
and dropped on the PostgreSQL at VAULT_TEST_ADMIN_DSN (default: the local one). The reads are
a professional's downloads spread over eight patients (docs/audit.md, "A group in two
statements", has the figures)."""

from __future__ import annotations

import argparse
import os
import secrets
import time
from pathlib import Path

import psycopg

from vault.access.chain import NO_PATIENT_CHAIN
from vault.access.journal import AuditService
from vault.access.records import AuditRecord, Outcome
from vault.db import make_engine, make_session_factory
from vault.identity.principal import Principal, Role
from vault.migrations import upgrade

ADMIN = os.environ.get("VAULT_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
READER = Principal(
    role=Role.PROFESSIONAL, subject="810000000001", token_id="t-1", source_ip="127.0.0.1"
)
PATIENTS = 8
WARM_UP = 10


def download(number: int) -> AuditRecord:
    return AuditRecord(
        action="R",
        outcome=Outcome.SUCCESS,
        purpose="TREAT",
        principal=READER,
        patient_id=f"patient-{number % PATIENTS}",
        resource_type="Binary",
        resource_id=f"binary-{number}",
        detail={"permission": "document:content"},
    )


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one-by-one", action="store_true")
    parser.add_argument("--entries", type=int, default=16000)
    arguments = parser.parse_args()
    name = f"bench_audit_group_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg:///{name}?{_query(ADMIN)}"
    try:
        upgrade(url)
        engine = make_engine(url, pool_size=1, max_overflow=0)
        factory = make_session_factory(engine)
        audit = AuditService()
        with engine.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()

        def append(session, records):
            if not arguments.one_by_one:
                return audit.append_many(session, records)
            ordered = sorted(records, key=lambda record: record.patient_id or NO_PATIENT_CHAIN)
            return [audit.append(session, record) for record in ordered]

        print("one by one" if arguments.one_by_one else "append_many")
        print("group  process CPU µs/entry  PostgreSQL backend CPU µs/entry")
        for size in (1, 4, 16, 64):
            groups = max(arguments.entries // size, 1)
            ours = theirs = 0.0
            for group in range(WARM_UP + groups):
                records = [download(group * size + number) for number in range(size)]
                before = backend_cpu(pid)
                with factory() as session, session.begin():
                    started = time.process_time()
                    append(session, records)
                    spent = time.process_time() - started
                if group >= WARM_UP:
                    ours += spent
                    theirs += backend_cpu(pid) - before
            entries = groups * size
            print(f"{size:5d}  {ours / entries * 1e6:21.1f}  {theirs / entries * 1e6:31.1f}")
        engine.dispose()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _query(dsn: str) -> str:
    """The admin DSN's host, port and user as a SQLAlchemy URL's query."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return "&".join(f"{key}={info[key]}" for key in ("host", "port", "user") if key in info)


if __name__ == "__main__":
    main()
