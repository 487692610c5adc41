"""A document sent without a category (IHE MHD allows 0..*, and the DMP profiles' own
examples send none) gets the class the ANS correspondence between document types and
classes (ASS_X04) gives its type, stored and searchable, and the sender is told; it is
refused, saying why, only when no class can be derived."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from tests.factories import CLASS_SYSTEM, LOINC, create_patient, document_reference, provide_bundle
from tests.fhir.support import assert_refused, response_entries, snapshot, warnings_of
from vault.documents.classes import correspondence

A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
PREFER_OUTCOME = {"Prefer": "return=OperationOutcome"}


@pytest.fixture
def patient_id(client, tokens) -> str:
    return create_patient(client, tokens)[0]


def _without_category(patient_id: str, type_system: str, type_code: str) -> dict:
    resource = document_reference({"reference": f"Patient/{patient_id}"})
    del resource["category"]
    resource["type"] = {"coding": [{"system": type_system, "code": type_code}]}
    return resource


@pytest.mark.parametrize(
    ("type_system", "type_code", "class_code"),
    [
        (LOINC, "11502-2", "10"),  # laboratory report: a report
        (LOINC, "57833-6", "42"),  # prescription for medication
        (LOINC, "18748-4", "31"),  # diagnostic imaging study
        (A05, "DOCPAT04", "31"),  # a patient's own imaging document
    ],
)
def test_iti_105_without_category_is_stored_under_the_class_derived_from_its_type(
    client, tokens, patient_id, type_system, type_code, class_code
):
    headers = tokens.professional()
    response = client.post(
        "/fhir/DocumentReference",
        json=_without_category(patient_id, type_system, type_code),
        headers=headers,
    )

    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["category"] == [{"coding": [{"system": CLASS_SYSTEM, "code": class_code}]}]
    found = client.get(
        "/fhir/DocumentReference",
        params={"patient": patient_id, "category": f"{CLASS_SYSTEM}|{class_code}"},
        headers=headers,
    ).json()
    assert [entry["resource"]["id"] for entry in found.get("entry", [])] == [stored["id"]]


def test_the_sender_is_told_that_the_class_was_derived(client, tokens, patient_id):
    response = client.post(
        "/fhir/DocumentReference",
        json=_without_category(patient_id, LOINC, "11502-2"),
        headers={**tokens.professional(), **PREFER_OUTCOME},
    )

    assert response.status_code == 201, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    warnings = [
        issue["diagnostics"] for issue in outcome["issue"] if issue["severity"] == "warning"
    ]
    assert any("derived" in text and f"{LOINC}|11502-2" in text for text in warnings), warnings


def test_a_sent_category_is_kept_and_nothing_is_said(client, tokens, patient_id):
    resource = document_reference({"reference": f"Patient/{patient_id}"})
    resource["category"] = [{"coding": [{"system": CLASS_SYSTEM, "code": "11"}]}]
    response = client.post(
        "/fhir/DocumentReference",
        json=resource,
        headers={**tokens.professional(), **PREFER_OUTCOME},
    )

    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "DocumentReference"


def test_without_category_and_a_type_the_table_does_not_know_it_is_refused_saying_so(
    client, tokens, services, patient_id
):
    before = snapshot(services)
    response = client.post(
        "/fhir/DocumentReference",
        json=_without_category(patient_id, LOINC, "1-8"),
        headers=tokens.professional(),
    )

    assert_refused(
        services,
        before,
        response,
        422,
        says="no class can be derived",
        where="DocumentReference.category",
    )


def test_iti_65_without_category_is_accepted_with_a_warning_on_its_entry(
    client, tokens, patient_id
):
    bundle = provide_bundle(
        {"reference": f"Patient/{patient_id}"}, [(b"%PDF-1.7 cr", "application/pdf")]
    )
    del bundle["entry"][1]["resource"]["category"]

    response = client.post("/fhir", json=bundle, headers=tokens.professional())

    assert response.status_code == 200, response.text
    entries = response_entries(response)
    assert entries[1]["status"].startswith("201")
    assert any("derived" in text for text in warnings_of(entries[1]))
    location = entries[1]["location"]
    stored = client.get(f"/fhir/{location.split('/_history')[0]}", headers=tokens.professional())
    assert stored.json()["category"][0]["coding"][0] == {"system": CLASS_SYSTEM, "code": "10"}


def test_the_correspondence_is_data_with_its_source_cited():
    document = json.loads(
        resources.files("vault.documents").joinpath("type_class.json").read_text("utf-8")
    )
    source = document["_source"]
    assert "ASS_X04" in source["name"]
    assert "ansforge/IG-terminologie-de-sante" in source["taken_from"]
    table = correspondence()
    assert table.class_system == CLASS_SYSTEM
    assert set(table.type_to_class) == {LOINC, A05}
    classes = {code for mapping in table.type_to_class.values() for code in mapping.values()}
    assert all(code.isdigit() and len(code) == 2 for code in classes)
