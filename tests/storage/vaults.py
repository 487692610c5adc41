"""A vault of its own for key and crypto tests: its own keyring (or token) and issuer over the
session's database, so rotating or destroying keys never reaches another test's keys."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from tests.factories import Tokens, document_reference, ins, patient_resource
from vault.api.app import create_app
from vault.services import Services, build_services
from vault.settings import Settings


@dataclass
class Vault:
    settings: Settings
    services: Services
    client: TestClient
    tokens: Tokens

    def create_patient(self, seed: int, family: str = "Martin") -> tuple[str, str]:
        ins_value = ins(seed)
        response = self.client.post(
            "/fhir/Patient",
            json=patient_resource(ins_value, family=family),
            headers=self.tokens.patient(ins_value),
        )
        assert response.status_code == 201, response.text
        return response.headers["Location"].split("/Patient/")[1].split("/")[0], ins_value

    def publish(
        self,
        patient_id: str,
        content: bytes,
        content_type: str = "application/pdf",
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> tuple[str, str]:
        """ITI-105; returns (DocumentReference id, Binary id)."""
        resource = document_reference(
            {"reference": f"Patient/{patient_id}"}, content, content_type=content_type
        )
        resource.update(fields)
        response = self.client.post(
            "/fhir/DocumentReference", json=resource, headers=headers or self.tokens.professional()
        )
        assert response.status_code == 201, response.text
        stored = response.json()
        return stored["id"], stored["content"][0]["attachment"]["url"].split("/")[-1]

    def download(self, binary_id: str, ins_value: str) -> bytes:
        response = self.client.get(
            f"/fhir/Binary/{binary_id}", headers=self.tokens.patient(ins_value)
        )
        assert response.status_code == 200, response.text
        return response.content


@contextmanager
def own_vault(database_url: str, data_dir: Path, **overrides: Any) -> Iterator[Vault]:
    settings = Settings(
        **{
            "database_url": database_url,
            "data_dir": data_dir,
            "base_url": "http://testserver",
            "blob_store": "db:",
            **overrides,
        }
    )
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


def table_names(engine: Engine) -> list[str]:
    """Every table of the schema, including any this test file does not know about."""
    with engine.connect() as connection:
        return list(
            connection.scalars(
                text(
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                    " ORDER BY table_name"
                )
            )
        )


def snapshot(engine: Engine, tables: list[str]) -> dict[str, list[str]]:
    """Every row of each table as PostgreSQL prints it (bytea in hex), in a stable order."""
    rows = {}
    with engine.connect() as connection:
        for table in tables:
            rows[table] = list(
                connection.scalars(text(f'SELECT t::text FROM "{table}" t ORDER BY t::text'))
            )
    return rows


def encodings(marker: bytes) -> list[str]:
    """The marker as it would show up stored as text, as bytea hex, or base64 at any alignment."""
    forms = {marker.decode(), marker.hex()}
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + marker).decode()
        # Only the characters that depend on the marker's bytes alone.
        inner = encoded[-(-4 * offset // 3) : 4 * (offset + len(marker)) // 3]
        forms.update({inner, inner.replace("+", "-").replace("/", "_")})
    return sorted(forms)
