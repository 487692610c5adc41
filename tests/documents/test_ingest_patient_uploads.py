"""Patients upload their own documents (advance directives, old results), by ITI-105 or
ITI-65: the author is the patient, whatever the app claimed, and an app need not mint the
document's unique id."""

from __future__ import annotations

from typing import Any

from tests.factories import create_patient, document_reference, provide_bundle
from tests.fhir.support import response_entries, snapshot


def without_master_identifier(resource: dict[str, Any]) -> dict[str, Any]:
    del resource["masterIdentifier"]
    return resource


def test_a_patient_publishes_their_own_document_as_its_author(client, tokens) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    resource = without_master_identifier(
        document_reference({"reference": f"Patient/{patient_id}"}, b"%PDF-1.7 directives")
    )
    response = client.post(
        "/fhir/DocumentReference", json=resource, headers=tokens.patient(ins_value)
    )
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["author"] == [{"reference": f"Patient/{patient_id}"}]
    assert stored["masterIdentifier"]["value"].startswith("urn:uuid:")


def test_a_patient_submits_a_provide_document_bundle_as_its_author(client, tokens) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    bundle = provide_bundle({"reference": f"Patient/{patient_id}"}, [(b"old result", "text/plain")])
    without_master_identifier(bundle["entry"][1]["resource"])
    response = client.post("/fhir", json=bundle, headers=tokens.patient(ins_value))
    assert response.status_code == 200, response.text
    location = response_entries(response)[1]["location"].split("/_history")[0]
    owner = {k: v for k, v in tokens.patient(ins_value).items() if k != "Content-Type"}
    assert client.get(f"/fhir/{location}", headers=owner).json()["author"] == [
        {"reference": f"Patient/{patient_id}"}
    ]


def test_a_patient_cannot_upload_into_another_patients_record(client, tokens, services) -> None:
    _, ins_value = create_patient(client, tokens, seed=1)
    other_id, _ = create_patient(client, tokens, seed=2)
    before = snapshot(services)
    response = client.post(
        "/fhir/DocumentReference",
        json=document_reference({"reference": f"Patient/{other_id}"}),
        headers=tokens.patient(ins_value),
    )
    assert response.status_code == 404, response.text
    after = snapshot(services)
    assert after["documents"] == before["documents"]
    assert after["binaries"] == before["binaries"]
