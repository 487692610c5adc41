"""Item 5 of issue 12: however a patient's upload names someone else's INS, the answer is the
one it gets for an INS that has no record, so no upload tells whether a person has a record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.factories import INS_SYSTEM, create_patient, document_reference, ins, provide_bundle

Subject = Callable[[str, str], dict[str, Any]]


def _mixed(own_id: str, other_ins: str) -> dict[str, Any]:
    """A reference to one's own record with an identifier naming someone else."""
    return {
        "reference": f"Patient/{own_id}",
        "identifier": {"system": INS_SYSTEM, "value": other_ins},
    }


def _contained_patient(other_ins: str, local_id: str = "p") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": local_id,
        "identifier": [{"system": INS_SYSTEM, "value": other_ins}],
        "name": [{"family": "Durand"}],
    }


def _publish_mixed(own_id: str, other_ins: str) -> dict[str, Any]:
    return document_reference(_mixed(own_id, other_ins))


def _publish_contained_subject(_own_id: str, other_ins: str) -> dict[str, Any]:
    resource = document_reference({"reference": "#p"})
    resource["contained"] = [_contained_patient(other_ins)]
    return resource


def _with_source_patient(resource: dict[str, Any], other_ins: str) -> dict[str, Any]:
    resource.setdefault("contained", []).append(_contained_patient(other_ins, "src"))
    resource["context"] = {"sourcePatientInfo": {"reference": "#src"}}
    return resource


def _publish_source_patient(own_id: str, other_ins: str) -> dict[str, Any]:
    return _with_source_patient(document_reference({"reference": f"Patient/{own_id}"}), other_ins)


def _bundle_mixed(own_id: str, other_ins: str) -> dict[str, Any]:
    return provide_bundle(_mixed(own_id, other_ins), [(b"%PDF-1.7 mine", "application/pdf")])


def _bundle_source_patient(own_id: str, other_ins: str) -> dict[str, Any]:
    bundle = provide_bundle(
        {"reference": f"Patient/{own_id}"}, [(b"%PDF-1.7 mine", "application/pdf")]
    )
    _with_source_patient(bundle["entry"][1]["resource"], other_ins)
    return bundle


def _bundle_contained_subject(_own_id: str, other_ins: str) -> dict[str, Any]:
    bundle = provide_bundle({"reference": "#p"}, [(b"%PDF-1.7 mine", "application/pdf")])
    for index in (0, 1):
        bundle["entry"][index]["resource"]["contained"] = [_contained_patient(other_ins)]
    return bundle


def _bundle_patient_entry(own_id: str, other_ins: str) -> dict[str, Any]:
    patient_url = "urn:uuid:7b3a3d38-1c1e-4c53-9d0f-2a4f6f1f0e11"
    entry = {
        "fullUrl": patient_url,
        "resource": _contained_patient(other_ins) | {"id": None},
        "request": {"method": "POST", "url": "Patient"},
    }
    del entry["resource"]["id"]
    return provide_bundle(
        {"reference": patient_url},
        [(b"%PDF-1.7 mine", "application/pdf")],
        patient_entry=entry,
    )


FORMS: dict[str, tuple[str, Callable[[str, str], dict[str, Any]]]] = {
    "iti105-reference-plus-identifier": ("/fhir/DocumentReference", _publish_mixed),
    "iti105-contained-subject": ("/fhir/DocumentReference", _publish_contained_subject),
    "iti105-source-patient-info": ("/fhir/DocumentReference", _publish_source_patient),
    "iti65-reference-plus-identifier": ("/fhir", _bundle_mixed),
    "iti65-contained-subject": ("/fhir", _bundle_contained_subject),
    "iti65-source-patient-info": ("/fhir", _bundle_source_patient),
    "iti65-patient-entry": ("/fhir", _bundle_patient_entry),
}


def _answer(response: Any) -> tuple[int, Any]:
    return response.status_code, response.json().get("issue")


@pytest.mark.parametrize("form", sorted(FORMS))
def test_naming_someone_elses_ins_answers_as_naming_no_one(client, tokens, form):
    own_id, own_ins = create_patient(client, tokens, 71)
    _, their_ins = create_patient(client, tokens, 72)
    nobody = ins(73)
    path, build = FORMS[form]

    with_record = client.post(path, json=build(own_id, their_ins), headers=tokens.patient(own_ins))
    without_record = client.post(path, json=build(own_id, nobody), headers=tokens.patient(own_ins))

    assert with_record.status_code >= 400, with_record.text
    assert _answer(with_record) == _answer(without_record)


def test_a_reference_with_an_ins_that_opens_no_record_is_the_mismatch_it_is(client, tokens):
    """The fix names the case for what it is, for every caller: the reference names an
    existing record, so an INS with no record names a different person."""
    own_id, own_ins = create_patient(client, tokens, 74)
    response = client.post(
        "/fhir/DocumentReference",
        json=_publish_mixed(own_id, ins(75)),
        headers=tokens.patient(own_ins),
    )
    assert response.status_code == 422
    assert "different patients" in response.json()["issue"][0]["diagnostics"]
    professional = client.post(
        "/fhir/DocumentReference",
        json=_publish_mixed(own_id, ins(75)),
        headers=tokens.professional(),
    )
    assert _answer(professional) == _answer(response)
