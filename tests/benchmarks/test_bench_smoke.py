"""The benchmark's machinery, run at a tiny size against a real PostgreSQL and a real
server: every key it reports is there and sane. Never a timing assertion: how fast is for
docs/performance.md, not for the test suite."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from tests.conftest import ADMIN_URL
from vault.bench import runner
from vault.bench.store import MARKER, claim_database
from vault.cli import app
from vault.errors import VaultError
from vault.settings import Settings

REQUIRED = (
    "ingest_docs_per_s",
    "ingest_p99_ms",
    "search_p99_ms",
    "binary_p99_ms",
    "raw_floor_docs_per_s",
    "audit_verify_entries_per_s",
    "documents_in_store",
    "rss_mb_peak",
    # Reads at the shapes patients have (issue 15).
    "search_big_patient_p50_ms",
    "search_p99_ms_8_clients",
    "binary_per_s_8_clients",
    "binary_p99_ms_8_clients",
    "mixed_read_p99_ms",
    "mixed_ingest_docs_per_s",
    "search_server_cpu_ms_per_op_8_clients",
    "binary_server_cpu_ms_per_op_8_clients",
    "binary_client_cpu_ms_per_op_8_clients",
)

TINY = runner.Plan(
    "tiny",
    stages=(60,),
    ingest_seconds=1.5,
    batched_seconds=1,
    raw_seconds=1,
    read_requests=6,
    clients=2,
    read_clients=8,
    read_seconds=1,
    single_client_searches=5,
    long_record=40,
    mixed_writers=2,
    workers=1,
    batch_documents=2,
    large_document=300_000,
    document_size=3_000,
    probes=3,
    probe_documents=2,
    filler_size=1_000,
)


@pytest.fixture
def empty_database() -> Iterator[str]:
    name = f"vault_bench_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _settings(url: str, data_dir: Path) -> Settings:
    return Settings(database_url=url, data_dir=data_dir, base_url="http://bench.test")


@pytest.mark.slow
def test_a_tiny_run_reports_every_key_with_a_positive_value(
    empty_database: str, tmp_path: Path
) -> None:
    settings = _settings(empty_database, tmp_path)
    results = runner.run(settings, TINY)
    reported = json.loads(json.dumps(results))

    for key in REQUIRED:
        assert isinstance(reported[key], int | float), key
        assert reported[key] > 0, key
    # The reads decrypted what the loader wrote (a tiny table is scanned, not indexed, so
    # only that the plan was looked at); the audit log of bulk-loaded and served entries
    # alike verified.
    assert isinstance(reported["search_plan_uses_index"], bool)
    assert "documents" in reported["reads_by_size"][0]["plan_shape"]
    assert reported["documents_at_reads"] >= 60
    assert reported["documents_in_store"] > reported["documents_at_reads"]
    assert reported["audit_entries_verified"] >= reported["documents_in_store"]
    assert reported["key_rotation_patients"] == reported["patients_in_store"]
    assert "raw PostgreSQL floor, documents/s" in runner.table(results)
    # The database's share of the machine, measured beside the server's (PostgreSQL runs
    # on this machine in the tests).
    assert reported["ingest_postgres_cpu_ms_per_doc"] > 0
    assert reported["raw_floor_postgres_cpu_ms_per_doc"] > 0
    # The CPU budget: the load generator's share, and the whole machine's, which holds the
    # load generator's and the server's.
    assert reported["ingest_client_cpu_ms_per_doc"] > 0
    assert reported["ingest_machine_cpu_ms_per_doc"] > max(
        reported["ingest_client_cpu_ms_per_doc"], reported["ingest_server_cpu_ms_per_doc"]
    )
    assert "whole machine's CPU per document" in runner.table(results)
    # The long record's searches returned full pages, as the small records' did.
    assert reported["long_record_documents"] == 40
    assert reported["search_small_patient_p50_ms"] > 0
    assert reported["mixed_read_per_s"] > 0
    assert "search, long record, 1 client, p50" in runner.table(results)


def test_a_second_run_grows_nothing_it_already_has(empty_database: str, tmp_path: Path) -> None:
    from vault.bench.store import Shape, StoreLoader  # noqa: PLC0415
    from vault.migrations import upgrade  # noqa: PLC0415
    from vault.storage.keys.factory import key_provider_from_url  # noqa: PLC0415

    settings = _settings(empty_database, tmp_path)
    claim_database(empty_database)
    upgrade(empty_database)
    provider = key_provider_from_url(settings.effective_key_provider, None)
    loader = StoreLoader(empty_database, provider, Shape(40, 5, probes=2, probe_documents=3))

    first = loader.fill(40, 5)
    again = loader.fill(40, 5)
    grown = loader.fill(50, 6)

    assert (first.patients, first.documents) == (5, 40)
    assert (again.patients_added, again.documents_added) == (0, 0)
    assert (grown.patients, grown.documents) == (6, 50)
    assert len(loader.probe_patients()) == 2
    assert all(len(ids) == 3 for ids in loader.probe_binaries().values())


def test_a_database_holding_other_data_is_refused(empty_database: str) -> None:
    dsn = empty_database.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE someone_elses (id int)")

    with pytest.raises(VaultError, match="not a bench store"):
        claim_database(empty_database)


def test_an_empty_database_is_marked_as_a_bench_store(empty_database: str) -> None:
    claim_database(empty_database)
    claim_database(empty_database)

    dsn = empty_database.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as connection:
        row = connection.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname = current_database()"
        ).fetchone()
    assert row == (MARKER,)


def test_the_command_refuses_a_database_that_is_not_postgresql(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "--quick", "--json"],
        env={"VAULT_DATABASE_URL": "", "VAULT_DATA_DIR": str(tmp_path)},
    )

    assert result.exit_code == 1
    assert "PostgreSQL" in result.output


def test_a_store_filled_under_another_keyring_is_refused_before_anything_runs(
    empty_database: str, tmp_path: Path
) -> None:
    from vault.bench.store import Shape, StoreLoader  # noqa: PLC0415
    from vault.migrations import upgrade  # noqa: PLC0415
    from vault.storage.keys.factory import key_provider_from_url  # noqa: PLC0415

    claim_database(empty_database)
    upgrade(empty_database)
    filled_with = key_provider_from_url(f"local:{tmp_path / 'one' / 'keyring.json'}", None)
    StoreLoader(empty_database, filled_with, Shape(4, 2, probes=1, probe_documents=1)).fill(4, 2)
    other = key_provider_from_url(f"local:{tmp_path / 'two' / 'keyring.json'}", None)

    with pytest.raises(VaultError, match="VAULT_DATA_DIR"):
        StoreLoader(empty_database, other, Shape(4, 2)).check_keys()
