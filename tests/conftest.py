"""Test fixtures: a real PostgreSQL database built by the migrations, one per test run
(and per xdist worker), emptied between tests.

``VAULT_TEST_DATABASE=sqlite`` builds a fresh SQLite file by the same migrations instead: the
second pass of ``scripts/test`` runs the HTTP-facing tests on it, which is what the README's
embedded default (``scripts/serve``) runs on. Tests that need PostgreSQL itself carry the
``postgres_only`` marker and are deselected there."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from tests.factories import Tokens
from vault.api.app import create_app
from vault.migrations import upgrade
from vault.models import Base
from vault.services import Services, build_services
from vault.settings import Settings

ADMIN_URL = os.environ.get("VAULT_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BACKEND = os.environ.get("VAULT_TEST_DATABASE", "postgresql")
if BACKEND not in {"postgresql", "sqlite"}:
    raise RuntimeError(f"VAULT_TEST_DATABASE must be postgresql or sqlite, not {BACKEND!r}")
ON_SQLITE = BACKEND == "sqlite"
# Set by tests/hardening/test_pgbouncer.py, which runs a slice of the suite again with the
# services connected through PgBouncer in transaction mode at this host:port.
POOLER = os.environ.get("VAULT_TEST_POOLER", "")
POOLER_OFFENDERS = os.environ.get("VAULT_TEST_POOLER_OFFENDERS", "")
# A statement that leaves state in the server session, which a transaction pooler hands
# to another client after the transaction (see tests/hardening/test_pgbouncer.py).
SESSION_STATE = re.compile(
    r"^\s*(SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)"
    r"|LISTEN\b|PREPARE\b|CREATE\s+TEMP(ORARY)?\b|DECLARE\b.*\bWITH\s+HOLD\b)"
    r"|\bpg_(try_)?advisory_lock(_shared)?\s*\(",
    re.IGNORECASE | re.DOTALL,
)


def breaks_session_pooling(statement: str) -> bool:
    return SESSION_STATE.search(statement) is not None


def _record_session_state(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    if breaks_session_pooling(statement):
        with Path(POOLER_OFFENDERS).open("a") as offenders:
            offenders.write(statement.replace("\n", " ")[:300] + "\n")


CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def _create_database() -> str:
    name = f"vault_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        # Tests run against a real PostgreSQL or not at all; CI must never fall back.
        pytest.exit(
            f"PostgreSQL is required for the tests and is unreachable: {error}", returncode=3
        )
    return name


def _drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not ON_SQLITE:
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("postgres_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if ON_SQLITE:
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'vault.db'}"
        upgrade(url)
        yield url
        return
    name = _create_database()
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    upgrade(url)
    yield url
    _drop_database(name)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vault-data")


@pytest.fixture(scope="session")
def settings(database_url: str, data_dir: Path) -> Settings:
    if POOLER:
        # The services' connections go through the pooler; the migrations and the tests'
        # own checks stay direct.
        host, port = POOLER.rsplit(":", 1)
        pooled = make_url(database_url).set(host=host, port=int(port))
        return Settings(
            database_url=pooled.render_as_string(hide_password=False),
            database_prepared_statements=False,
            data_dir=data_dir,
            base_url="http://testserver",
            blob_store="db:",
        )
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        base_url="http://testserver",
        blob_store="db:",
        # Many tests probe what they may not see on purpose, more than an actor's refusal
        # allowance; the refusal throttle has tests of its own, at the shipped default.
        refusal_limit=1_000_000,
    )


@pytest.fixture(scope="session")
def session_services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings)
    if POOLER_OFFENDERS:
        event.listen(built.engine, "before_cursor_execute", _record_session_state)
    yield built
    built.close()


def truncate_all(found: Services) -> None:
    if found.engine.dialect.name == "sqlite":
        # SQLite has no TRUNCATE: delete children before parents, and forget AUTOINCREMENT
        # counters so identities restart as they do on PostgreSQL.
        with found.engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
            has_sequences = connection.execute(
                text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
            ).first()
            if has_sequences:
                connection.execute(text("DELETE FROM sqlite_sequence"))
        return
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with found.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def services(session_services: Services) -> Iterator[Services]:
    yield session_services
    truncate_all(session_services)
    session_services.keys.forget()


@pytest.fixture
def app(services: Services, settings: Settings):
    return create_app(settings, services)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def tokens(services: Services) -> Tokens:
    assert services.issuer is not None
    return Tokens(services.issuer)


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is absent: conformance tests need the public FHIR examples")
    return CORPUS
