"""Vaults of their own for backup, restore and operations tests: each with its own
PostgreSQL database, data directory (keyring, signing keys) and blob store."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, select
from typer.testing import CliRunner, Result

from tests.conftest import ADMIN_URL
from tests.factories import (
    DOCTOR,
    Tokens,
    provide_bundle,
)
from tests.storage.vaults import Vault
from vault.api.app import create_app
from vault.backup import codec
from vault.cli import app as cli_app
from vault.db import make_engine
from vault.migrations import upgrade
from vault.services import build_services
from vault.settings import Settings, get_settings


@pytest.fixture(scope="session")
def ops_database() -> Iterator[str]:
    """One database for all operations tests; each vault gets a schema of its own in it
    (creating and dropping schemas is instant, databases are not)."""
    name = f"vault_ops_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_database(ops_database: str) -> Callable[..., AbstractContextManager[str]]:
    """``with fresh_database() as url``: an empty (or freshly migrated) vault database."""
    admin = ops_database.replace("postgresql+psycopg://", "postgresql://", 1)

    @contextmanager
    def make(*, migrate: bool = True) -> Iterator[str]:
        schema = f"vault_{secrets.token_hex(6)}"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
        try:
            url = f"{ops_database}?options=-csearch_path%3D{schema}"
            if migrate:
                upgrade(url)
            yield url
        finally:
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return make


def vault_settings(
    database_url: str, data_dir: Path, blob_store: str = "db:", **extra: Any
) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        base_url="http://testserver",
        blob_store=blob_store,
        **extra,
    )


def env_of(settings: Settings) -> dict[str, str]:
    return {
        "VAULT_DATABASE_URL": settings.database_url,
        "VAULT_DATA_DIR": str(settings.data_dir),
        "VAULT_BASE_URL": settings.base_url,
        "VAULT_BLOB_STORE": settings.blob_store,
        "VAULT_KEY_PROVIDER": settings.key_provider,
    }


def run_cli(settings: Settings, *args: str) -> Result:
    """The ``vault`` command in-process, configured by environment variables as an operator
    would configure it."""
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli_app, list(args), env=env_of(settings))
    finally:
        get_settings.cache_clear()


@contextmanager
def open_vault(settings: Settings) -> Iterator[Vault]:
    services = build_services(settings)
    try:
        assert services.issuer is not None
        with TestClient(
            create_app(settings, services),
            base_url=settings.base_url,
            raise_server_exceptions=False,
        ) as client:
            yield Vault(settings, services, client, Tokens(services.issuer))
    finally:
        services.close()


def table_contents(database_url: str, skip: frozenset[str] = frozenset()) -> dict[str, list[Any]]:
    """Every row of every table, in key order, as a backup would encode it."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            metadata = MetaData()
            metadata.reflect(connection)
            contents = {}
            for table in metadata.sorted_tables:
                if table.name in skip:
                    continue
                order = list(table.primary_key.columns) or list(table.columns)
                rows = connection.execute(select(table).order_by(*order))
                contents[table.name] = [codec.encode_row(table, row._mapping) for row in rows]
            return contents
    finally:
        engine.dispose()


def fill(vault: Vault) -> dict[str, tuple[str, bytes]]:
    """Two patients, documents of every size class, a bundle, a refusal, a deletion and a
    signed audit checkpoint. Returns binary id -> (patient INS, content) of live documents."""
    first, first_ins = vault.create_patient(11, family="Drillfirst")
    second, second_ins = vault.create_patient(12, family="Drillsecond")
    documents: dict[str, tuple[str, bytes]] = {}
    for patient_id, ins_value, content in [
        (first, first_ins, b"%PDF-1.7 small report"),
        (first, first_ins, os.urandom(200 * 1024 + 17)),  # several encryption segments
        (second, second_ins, os.urandom(3 * 1024 * 1024 + 5)),  # several blob chunks
    ]:
        _document_id, binary_id = vault.publish(patient_id, content)
        documents[binary_id] = (ins_value, content)
    bundle = provide_bundle(
        {"reference": f"Patient/{second}"}, [(b"bundle one", "text/plain"), (b"two", "text/plain")]
    )
    response = vault.client.post(
        "/fhir", json=bundle, headers=vault.tokens.software(on_behalf_of=DOCTOR)
    )
    assert response.status_code == 200, response.text
    found = vault.client.get(
        f"/fhir/DocumentReference?patient={second}", headers=vault.tokens.patient(second_ins)
    ).json()
    for entry in found["entry"]:
        binary_id = entry["resource"]["content"][0]["attachment"]["url"].split("/")[-1]
        if binary_id not in documents:
            documents[binary_id] = (second_ins, vault.download(binary_id, second_ins))
    doomed, doomed_binary = vault.publish(first, b"to be deleted")
    deleted = vault.client.delete(
        f"/fhir/DocumentReference/{doomed}", headers=vault.tokens.professional()
    )
    assert deleted.status_code in (200, 204), deleted.text
    refused = vault.client.get(
        f"/fhir/Binary/{next(iter(documents))}", headers=vault.tokens.patient(second_ins)
    )
    assert refused.status_code == 404
    assert vault.services.audit_log.checkpoints.make(vault.services.session_factory) is not None
    return documents | {doomed_binary: (first_ins, b"")}
