"""A download of the usual shape (GET, a bearer token, no query) is answered before FastAPI
routes it (vault/api/fhir/fast_binary.py); any other shape goes through the route. Both
must answer alike and leave the same audit entry: the same decision, made in one place."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests.factories import DOCTOR, OTHER_DOCTOR, create_patient, publish
from vault.models import AuditEntry

# A query the route ignores, so that the request takes the routed path.
ROUTED = "?_pretty=false"
# What differs between two answers whatever answered them.
PER_REQUEST = {"x-request-id"}


def answer(client: Any, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    response = client.get(url, headers=headers)
    kept = {name: value for name, value in response.headers.items() if name not in PER_REQUEST}
    return response.status_code, kept, response.content


def last_entry(services: Any) -> dict[str, Any]:
    with services.session_factory() as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).one()
        return {
            "action": entry.action,
            "outcome": entry.outcome,
            "actor_role": entry.actor_role,
            "actor_id": entry.actor_id,
            "patient_id": entry.patient_id,
            "resource_type": entry.resource_type,
            "resource_id": entry.resource_id,
            "detail": entry.detail,
        }


@pytest.fixture
def stored(client, tokens) -> dict[str, Any]:
    patient_id, ins_value = create_patient(client, tokens, seed=41)
    other_id, other_ins = create_patient(client, tokens, seed=42)
    document = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 the same answer")
    other = publish(client, tokens.professional(), other_id, b"%PDF-1.7 someone else's")
    return {
        "patient": patient_id,
        "ins": ins_value,
        "other_ins": other_ins,
        "binary": document["content"][0]["attachment"]["url"].split("/")[-1],
        "others_binary": other["content"][0]["attachment"]["url"].split("/")[-1],
    }


CASES = {
    "the patient downloads their document": lambda s, t: (s["binary"], t.patient(s["ins"])),
    "asked for as a FHIR Binary": lambda s, t: (
        s["binary"],
        {**t.patient(s["ins"]), "Accept": "application/fhir+json"},
    ),
    "an unknown binary": lambda s, t: ("no-such-binary", t.patient(s["ins"])),
    "another patient's binary": lambda s, t: (s["others_binary"], t.patient(s["ins"])),
    "a professional the patient has not chosen": lambda s, t: (
        s["binary"],
        t.professional(OTHER_DOCTOR),
    ),
    "the author": lambda s, t: (s["binary"], t.professional(DOCTOR)),
}


@pytest.mark.parametrize("case", CASES)
def test_the_fast_and_the_routed_download_answer_alike_and_are_audited_alike(
    client, tokens, services, stored, case
) -> None:
    binary_id, headers = CASES[case](stored, tokens)
    url = f"/fhir/Binary/{binary_id}"

    fast = answer(client, url, headers)
    fast_entry = last_entry(services)
    routed = answer(client, url + ROUTED, headers)
    routed_entry = last_entry(services)

    assert fast == routed
    assert fast_entry == routed_entry


def test_a_bad_token_is_refused_alike_on_both_paths(client, stored) -> None:
    headers = {"Authorization": "Bearer not-a-token"}
    url = f"/fhir/Binary/{stored['binary']}"

    fast = answer(client, url, headers)
    routed = answer(client, url + ROUTED, headers)

    assert fast[0] == 401
    assert "invalid_token" in fast[1]["www-authenticate"]
    assert fast == routed


def test_a_download_without_a_token_meets_the_challenge(client, stored) -> None:
    response = client.get(f"/fhir/Binary/{stored['binary']}")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="vault"'
    assert response.json()["resourceType"] == "OperationOutcome"
