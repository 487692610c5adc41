"""Who a policy entry names: an (issuer, subject) pair, or a national identifier only the
issuers trusted for its namespace vouch for. A caregiver account at one issuer is not the
account with the same ``sub`` at another (issue 12, item 2)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from tests.access.policy_support import grant, policy_url, publish_document, sees
from tests.factories import OTHER_DOCTOR, Tokens, create_patient
from vault.access.permissions import Permission
from vault.access.policy import Actor, Basis, decide
from vault.access.state import UNBOUND_ISSUER, Entry, EntryKind, PatientPolicy
from vault.api.app import create_app
from vault.identity.principal import Principal, Role
from vault.identity.scopes import DEFAULT_SCOPES, parse_scopes
from vault.identity.tokens import EmbeddedIssuer
from vault.migrations import upgrade
from vault.services import Services, build_services
from vault.settings import Settings

CAREGIVER = "aidant-7"


@dataclass
class TwoIssuers:
    client: TestClient
    own: Tokens
    other: EmbeddedIssuer


@pytest.fixture
def two_issuers(settings: Settings, services: Services, tmp_path: Path) -> Iterator[TwoIssuers]:
    """The vault trusting its own issuer and another one (an organisation's identity
    broker) that may grant the caregiver role."""
    other = EmbeddedIssuer(tmp_path, "https://broker.example.org", settings.token_audience)
    config = [{"issuer": other.issuer, "jwks": other.jwks(), "roles": ["caregiver"]}]
    configured = settings.model_copy(update={"oidc_issuers": json.dumps(config)})
    built = build_services(configured)
    try:
        with TestClient(create_app(configured, built), raise_server_exceptions=False) as client:
            assert built.issuer is not None
            yield TwoIssuers(client, Tokens(built.issuer), other)
    finally:
        built.close()


def test_a_caregiver_token_with_the_same_sub_from_another_issuer_does_not_use_the_delegation(
    two_issuers,
):
    client, tokens = two_issuers.client, two_issuers.own
    patient_id, patient_ins = create_patient(client, tokens)
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), patient_id)
    granted = grant(client, tokens.patient(patient_ins), patient_id, CAREGIVER)
    assert granted.status_code == 201, granted.text
    assert granted.json()["granteeIssuer"] == tokens.issuer.issuer

    impostor = Tokens._headers(two_issuers.other.mint("caregiver", CAREGIVER))
    assert not sees(client, impostor, document_id)
    assert client.get("/api/me/relationships", headers=impostor).json() == []
    assert sees(client, tokens.caregiver(CAREGIVER), document_id)


def test_a_delegation_names_the_issuer_of_the_caregiver_account_it_is_granted_to(two_issuers):
    client, tokens = two_issuers.client, two_issuers.own
    patient_id, patient_ins = create_patient(client, tokens)
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), patient_id)
    own = tokens.patient(patient_ins)
    response = client.post(
        policy_url(patient_id, "/delegations"),
        json={
            "caregiver": CAREGIVER,
            "issuer": two_issuers.other.issuer,
            "scope": "read",
            "categories": ["*"],
            "expires": "2099-01-01T00:00:00+00:00",
        },
        headers=own,
    )
    # More than a year ahead: refused, and then granted within a year.
    assert response.status_code == 422
    granted = client.post(
        policy_url(patient_id, "/delegations"),
        json={**json.loads(response.request.content), "expires": _in_days(30)},
        headers=own,
    )
    assert granted.status_code == 201, granted.text
    assert sees(
        client, Tokens._headers(two_issuers.other.mint("caregiver", CAREGIVER)), document_id
    )
    assert not sees(client, tokens.caregiver(CAREGIVER), document_id)
    # An issuer the vault does not trust cannot be named.
    untrusted = client.post(
        policy_url(patient_id, "/delegations"),
        json={
            "caregiver": CAREGIVER,
            "issuer": "https://unknown.example",
            "scope": "read",
            "categories": ["*"],
            "expires": _in_days(30),
        },
        headers=own,
    )
    assert untrusted.status_code == 422
    assert untrusted.json()["resourceType"] == "OperationOutcome"


def _in_days(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


@pytest.mark.parametrize(
    ("legacy", "expected"), [(None, UNBOUND_ISSUER), ("https://idp.example", "https://idp.example")]
)
def test_the_migration_binds_old_caregiver_entries_to_no_token_unless_told_their_issuer(
    tmp_path, monkeypatch, legacy, expected
):
    url = f"sqlite:///{tmp_path / 'vault.db'}"
    upgrade(url, "3ffc31e7d521")
    engine = create_engine(url)
    columns = (
        "id, patient_id, kind, subject, categories, starts_at, version_added, "
        "created_by_role, created_by"
    )
    with engine.begin() as connection:
        for entry_id, kind, subject in (
            ("d1", "delegation", "caregiver:aidant-7"),
            ("r1", "legal-representative", "ins:00ff"),
            ("c1", "care-team", "810000000001"),
        ):
            connection.execute(
                text(
                    f"INSERT INTO access_policy_entries ({columns}) VALUES "
                    "(:id, 'p1', :kind, :subject, '[]', '2026-01-01 00:00:00', 1, 'patient', 'p1')"
                ),
                {"id": entry_id, "kind": kind, "subject": subject},
            )
    if legacy is None:
        monkeypatch.delenv("VAULT_LEGACY_CAREGIVER_ISSUER", raising=False)
    else:
        monkeypatch.setenv("VAULT_LEGACY_CAREGIVER_ISSUER", legacy)
    upgrade(url)
    with engine.connect() as connection:
        issuers = dict(
            connection.execute(text("SELECT id, issuer FROM access_policy_entries")).all()
        )
    engine.dispose()
    # Only caregiver accounts had an issuer to lose; INS and IDNPS are national namespaces.
    assert issuers == {"d1": expected, "r1": None, "c1": None}


def test_the_decision_matches_a_delegation_on_the_issuer_as_well_as_the_subject():
    at = datetime(2026, 6, 1, tzinfo=UTC)
    delegation = Entry(
        id="d1",
        kind=EntryKind.DELEGATION,
        subject="caregiver:aidant-7",
        starts_at=at,
        scope="read",
        categories=frozenset({"*"}),
        issuer="https://idp-a.example",
    )
    policy = PatientPolicy("p1", at, 1, (delegation,))

    def caregiver(issuer: str) -> Actor:
        principal = Principal(
            role=Role.CAREGIVER,
            subject="aidant-7",
            scopes=parse_scopes(DEFAULT_SCOPES["caregiver"]),
            issuer=issuer,
        )
        return Actor(principal, proxy_key="caregiver:aidant-7", proxy_issuer=issuer)

    allowed = decide(
        caregiver("https://idp-a.example"), Permission.PATIENT_READ, "p1", policy=policy
    )
    refused = decide(
        caregiver("https://idp-b.example"), Permission.PATIENT_READ, "p1", policy=policy
    )
    assert allowed.allowed
    assert allowed.basis is Basis.DELEGATION
    assert not refused.allowed
