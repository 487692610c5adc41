"""A real ``vault serve`` believes X-Forwarded-For only from the proxies named in
VAULT_TRUSTED_PROXIES (none by default): a client on loopback cannot reset the
authentication throttle nor choose the address the audit log records by forging it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.factories import Tokens, ins, patient_resource
from tests.hardening.servers import BASE_URL, VaultServer, scratch_database, vault_env
from vault.db import make_engine
from vault.identity.tokens import EmbeddedIssuer
from vault.models import AuditEntry

FORGED = "203.0.113.{}"


def _bad_tokens_from_forged_addresses(base: str, count: int) -> list[int]:
    statuses = []
    with httpx.Client(timeout=30) as http:
        for number in range(count):
            response = http.get(
                f"{base}/fhir/DocumentReference",
                headers={
                    "Authorization": "Bearer not-a-token",
                    "X-Forwarded-For": FORGED.format(number),
                },
            )
            statuses.append(response.status_code)
    return statuses


def _recorded_addresses(url: str) -> set[str | None]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.scalars(select(AuditEntry.source_ip)))
    finally:
        engine.dispose()


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_forwarded_headers_are_believed_only_from_named_proxies(tmp_path: Path, trusted: str):
    data_dir = tmp_path / "data"
    tokens = Tokens(EmbeddedIssuer(data_dir, BASE_URL, "vault"))
    with scratch_database() as url:
        env = vault_env(
            url,
            data_dir,
            "db:",
            VAULT_AUTH_FAILURE_LIMIT="3",
            VAULT_TRUSTED_PROXIES=trusted,
            # What uvicorn believed by itself before: it must not matter any more.
            FORWARDED_ALLOW_IPS="127.0.0.1",
        )
        server = VaultServer(env, tmp_path / "server.log")
        try:
            base = server.start()
            created = httpx.post(
                f"{base}/fhir/Patient",
                json=patient_resource(ins(1)),
                headers={**tokens.patient(ins(1)), "X-Forwarded-For": "198.51.100.4"},
                timeout=30,
            )
            assert created.status_code == 201, created.text
            statuses = _bad_tokens_from_forged_addresses(base, 6)
        finally:
            server.stop()
        recorded = _recorded_addresses(url)

    if trusted:
        # The named proxy speaks for its clients: each forwarded address is its own.
        assert 429 not in statuses
        assert recorded == {"198.51.100.4"}
    else:
        # From anyone else the header is noise: one peer, one throttle bucket, its own
        # address in the log.
        assert statuses[:3] == [401, 401, 401]
        assert 429 in statuses[3:]
        assert recorded == {"127.0.0.1"}
