"""INS checks at ingestion under both settings of VAULT_CHECK_INS_KEY: the form (13
characters -- digits, or 2A/2B -- and a 2-digit key) always; the key itself only when the
setting is on, since published test data carries placeholder INS."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import INS_SYSTEM, document_reference, ins, patient_resource, provide_bundle
from tests.fhir.support import assert_refused, response_entries, snapshot
from vault.api.app import create_app
from vault.services import build_services

# Well-formed, but its key is not 97 - (number mod 97): the kind of INS test data carries.
WRONG_KEY = "189079912345678"


@pytest.fixture
def strict_client(services, settings) -> Iterator[TestClient]:
    """The vault with VAULT_CHECK_INS_KEY=true, on the same database."""
    strict = settings.model_copy(update={"check_ins_key": True})
    built = build_services(strict)
    try:
        with TestClient(create_app(strict, built), raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        built.close()


def new_patient(client: Any, tokens: Any, ins_value: str) -> Any:
    return client.post(
        "/fhir/Patient", json=patient_resource(ins_value), headers=tokens.professional()
    )


def transaction_with_patient_entry(ins_value: str) -> dict[str, Any]:
    full_url = f"urn:uuid:{uuid.uuid4()}"
    entry = {
        "fullUrl": full_url,
        "resource": patient_resource(ins_value),
        "request": {"method": "POST", "url": "Patient"},
    }
    return provide_bundle({"reference": full_url}, [(b"x", "text/plain")], patient_entry=entry)


def test_by_default_a_well_formed_ins_with_a_wrong_key_is_accepted_everywhere(
    client, tokens
) -> None:
    assert new_patient(client, tokens, WRONG_KEY).status_code == 201
    by_identifier = client.post(
        "/fhir/DocumentReference",
        json=document_reference({"identifier": {"system": INS_SYSTEM, "value": WRONG_KEY}}),
        headers=tokens.professional(),
    )
    assert by_identifier.status_code == 201, by_identifier.text
    other = f"{WRONG_KEY[:5]}2A{WRONG_KEY[7:]}"
    provided = client.post(
        "/fhir", json=transaction_with_patient_entry(other), headers=tokens.professional()
    )
    assert provided.status_code == 200, provided.text
    assert response_entries(provided)[1]["status"] == "201 Created"


def test_with_key_checking_on_a_correct_key_is_accepted(strict_client, tokens) -> None:
    assert new_patient(strict_client, tokens, ins(3)).status_code == 201
    provided = strict_client.post(
        "/fhir", json=transaction_with_patient_entry(ins(4)), headers=tokens.professional()
    )
    assert provided.status_code == 200, provided.text


def test_with_key_checking_on_a_wrong_key_is_refused_for_a_new_patient(
    strict_client, tokens, services
) -> None:
    before = snapshot(services)
    response = new_patient(strict_client, tokens, WRONG_KEY)
    assert_refused(services, before, response, 422, says="INS key does not match")


def test_with_key_checking_on_a_wrong_key_is_refused_in_a_transaction(
    strict_client, tokens, services
) -> None:
    before = snapshot(services)
    response = strict_client.post(
        "/fhir", json=transaction_with_patient_entry(WRONG_KEY), headers=tokens.professional()
    )
    assert_refused(
        services,
        before,
        response,
        422,
        says="INS key does not match",
        where="Bundle.entry[1].resource.identifier[0]",
    )


def test_with_key_checking_on_a_wrong_key_in_a_reference_is_refused(
    client, strict_client, tokens, services
) -> None:
    assert new_patient(client, tokens, WRONG_KEY).status_code == 201
    for subject in (
        {"identifier": {"system": INS_SYSTEM, "value": WRONG_KEY}},
        {"reference": f"Patient?identifier={INS_SYSTEM}|{WRONG_KEY}"},
    ):
        before = snapshot(services)
        response = strict_client.post(
            "/fhir/DocumentReference",
            json=document_reference(subject),
            headers=tokens.professional(),
        )
        assert_refused(
            services, before, response, 422, says="INS key", where="DocumentReference.subject"
        )


@pytest.mark.parametrize(
    "value", ["18907991234567", "1890799123456789", "18907CA12345678", "1890799123456A8"]
)
def test_a_malformed_ins_is_refused_whatever_the_setting(
    client, strict_client, tokens, services, value
) -> None:
    for vault in (client, strict_client):
        before = snapshot(services)
        response = new_patient(vault, tokens, value)
        assert_refused(
            services, before, response, 422, says="13 characters", where="Patient.identifier[0]"
        )
