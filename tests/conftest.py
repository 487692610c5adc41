"""Test fixtures: a real PostgreSQL database built by the migrations, one per test run
(and per xdist worker), emptied between tests."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.factories import Tokens
from vault.api.app import create_app
from vault.migrations import upgrade
from vault.models import Base
from vault.services import Services, build_services
from vault.settings import Settings

ADMIN_URL = os.environ.get("VAULT_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")
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


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
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
    yield built
    built.close()


def truncate_all(found: Services) -> None:
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
