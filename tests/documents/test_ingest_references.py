"""Every way FHIR lets a submission name its patient, over HTTP: literal (relative, absolute
on this server, version-specific), contained, in-bundle (``urn:uuid:`` Patient entry, with
or without ifNoneExist), conditional and logical -- and the ways that must fail."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.factories import (
    INS_SYSTEM,
    create_patient,
    document_reference,
    ins,
    patient_resource,
    provide_bundle,
)
from tests.fhir.support import assert_refused, response_entries, snapshot

INS_TEST_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"


def publish(client: Any, tokens: Any, subject: dict[str, Any], **kw: Any) -> Any:
    return client.post(
        "/fhir/DocumentReference",
        json=document_reference(subject, **kw),
        headers=tokens.professional(),
    )


def stored_subject(response: Any) -> str:
    assert response.status_code in (200, 201), response.text
    return str(response.json()["subject"]["reference"])


def patient_entry(
    resource: dict[str, Any], if_none_exist: str | None = None
) -> tuple[str, dict[str, Any]]:
    full_url = f"urn:uuid:{uuid.uuid4()}"
    request: dict[str, Any] = {"method": "POST", "url": "Patient"}
    if if_none_exist is not None:
        request["ifNoneExist"] = if_none_exist
    return full_url, {"fullUrl": full_url, "resource": resource, "request": request}


# -- literal ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    ["Patient/{id}", "http://testserver/fhir/Patient/{id}", "Patient/{id}/_history/1"],
)
def test_a_literal_reference_to_a_patient_of_this_server_is_resolved(client, tokens, form) -> None:
    patient_id, _ = create_patient(client, tokens)
    response = publish(client, tokens, {"reference": form.format(id=patient_id)})
    assert stored_subject(response) == f"Patient/{patient_id}"


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ("Patient/{missing}", "does not exist"),
        ("http://example.org/fhir/Patient/{id}", "on this server"),
        ("Practitioner/{id}", "on this server"),
        ("urn:uuid:{missing}", "no Patient entry"),
        ("{id}", "on this server"),
    ],
)
def test_a_literal_reference_to_no_patient_here_is_refused(
    client, tokens, services, form, says
) -> None:
    patient_id, _ = create_patient(client, tokens)
    subject = {"reference": form.format(id=patient_id, missing=uuid.uuid4())}
    before = snapshot(services)
    response = publish(client, tokens, subject)
    assert_refused(services, before, response, 422, says=says, where="DocumentReference.subject")


def test_a_reference_whose_type_is_not_patient_is_refused(client, tokens, services) -> None:
    patient_id, _ = create_patient(client, tokens)
    before = snapshot(services)
    response = publish(client, tokens, {"reference": f"Patient/{patient_id}", "type": "Group"})
    assert_refused(services, before, response, 422, says="reference a Patient")


# -- contained --------------------------------------------------------------------------


def with_contained_patient(resource: dict[str, Any], patient: dict[str, Any]) -> dict[str, Any]:
    resource["contained"] = [{**patient, "id": "p1"}]
    resource["subject"] = {"reference": "#p1"}
    return resource


def test_a_contained_patient_with_a_known_ins_is_that_record(client, tokens, services) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    before = snapshot(services)
    document = with_contained_patient(
        document_reference({}), patient_resource(ins_value, family="Autre")
    )
    response = client.post("/fhir/DocumentReference", json=document, headers=tokens.professional())
    assert stored_subject(response) == f"Patient/{patient_id}"
    assert snapshot(services)["patients"] == before["patients"]


def test_a_contained_patient_with_a_new_ins_opens_a_record(client, tokens) -> None:
    ins_value = ins(42)
    document = with_contained_patient(document_reference({}), patient_resource(ins_value))
    response = client.post("/fhir/DocumentReference", json=document, headers=tokens.professional())
    subject = stored_subject(response)
    found = client.get(
        "/fhir/DocumentReference",
        params={"patient.identifier": f"{INS_SYSTEM}|{ins_value}"},
        headers=tokens.patient(ins_value),
    )
    assert [entry["resource"]["subject"]["reference"] for entry in found.json()["entry"]] == [
        subject
    ]


def test_a_contained_patient_without_ins_is_refused(client, tokens, services) -> None:
    patient = patient_resource("x")
    patient["identifier"] = [{"system": "http://example.org/patients", "value": "mrn-1234"}]
    document = with_contained_patient(document_reference({}), patient)
    before = snapshot(services)
    response = client.post("/fhir/DocumentReference", json=document, headers=tokens.professional())
    assert_refused(services, before, response, 422, says="INS")


def test_a_reference_to_a_missing_contained_patient_is_refused(client, tokens, services) -> None:
    before = snapshot(services)
    response = publish(client, tokens, {"reference": "#nobody"})
    assert_refused(services, before, response, 422, says="no contained Patient")


# -- conditional and logical ------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        "Patient?identifier={system}|{value}",
        "Patient?identifier={system}%7C{value}",
        "Patient?identifier={test_system}|{value}",
    ],
)
def test_a_conditional_reference_resolves_to_the_one_matching_patient(client, tokens, form) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    reference = form.format(system=INS_SYSTEM, test_system=INS_TEST_SYSTEM, value=ins_value)
    response = publish(client, tokens, {"reference": reference})
    assert stored_subject(response) == f"Patient/{patient_id}"


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ("Patient?identifier={system}|{unknown}", "No patient matches"),
        ("Patient?identifier={system}|123", "13 characters"),
        ("Patient?identifier=http://example.org/mrn|1234", "identified by their INS"),
        ("Patient?identifier={value}", "system|value"),
        ("Patient?name=Martin", "system|value"),
        ("Patient?identifier={system}|{value}&birthdate=1985-07-14", "system|value"),
    ],
)
def test_a_conditional_reference_matching_no_one_or_unsupported_is_refused(
    client, tokens, services, form, says
) -> None:
    _, ins_value = create_patient(client, tokens)
    reference = form.format(system=INS_SYSTEM, value=ins_value, unknown=ins(77))
    before = snapshot(services)
    response = publish(client, tokens, {"reference": reference})
    assert_refused(services, before, response, 422, says=says, where="DocumentReference.subject")


def test_a_logical_reference_by_ins_resolves_to_the_patient(client, tokens) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    response = publish(client, tokens, {"identifier": {"system": INS_SYSTEM, "value": ins_value}})
    assert stored_subject(response) == f"Patient/{patient_id}"


@pytest.mark.parametrize(
    ("identifier", "says"),
    [
        ({"system": INS_SYSTEM, "value": ins(78)}, "No patient matches"),
        ({"system": INS_SYSTEM, "value": "1850375"}, "13 characters"),
        ({"system": "http://example.org/mrn", "value": "1234"}, "identified by their INS"),
        ({"value": "185037512345678"}, "identified by their INS"),
    ],
)
def test_a_logical_reference_to_no_known_patient_is_refused(
    client, tokens, services, identifier, says
) -> None:
    create_patient(client, tokens)
    before = snapshot(services)
    response = publish(client, tokens, {"identifier": identifier})
    assert_refused(services, before, response, 422, says=says)


def test_a_reference_whose_identifier_names_another_patient_is_refused(
    client, tokens, services
) -> None:
    patient_id, _ = create_patient(client, tokens, seed=1)
    _, other_ins = create_patient(client, tokens, seed=2)
    subject = {
        "reference": f"Patient/{patient_id}",
        "identifier": {"system": INS_SYSTEM, "value": other_ins},
    }
    before = snapshot(services)
    response = publish(client, tokens, subject)
    assert_refused(services, before, response, 422, says="different patients")


# -- in-bundle ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "if_none_exist",
    [None, "identifier={system}|{value}", "Patient?identifier={system}|{value}"],
)
def test_a_patient_entry_referenced_by_urn_uuid_is_created_then_found_again(
    client, tokens, if_none_exist
) -> None:
    ins_value = ins(5)
    condition = if_none_exist.format(system=INS_SYSTEM, value=ins_value) if if_none_exist else None
    locations = []
    for attempt in range(2):
        full_url, entry = patient_entry(patient_resource(ins_value), condition)
        bundle = provide_bundle(
            {"reference": full_url},
            [(f"report {attempt}".encode(), "text/plain")],
            patient_entry=entry,
        )
        response = client.post("/fhir", json=bundle, headers=tokens.professional())
        assert response.status_code == 200, response.text
        entries = response_entries(response)
        # provide_bundle puts the SubmissionSet first, then the Patient entry.
        assert entries[1]["status"] == ("201 Created" if attempt == 0 else "200 OK")
        locations.append(entries[1]["location"])
    assert locations[0] == locations[1]


def test_an_if_none_exist_naming_another_ins_fails_the_transaction(
    client, tokens, services
) -> None:
    full_url, entry = patient_entry(patient_resource(ins(5)), f"identifier={INS_SYSTEM}|{ins(6)}")
    bundle = provide_bundle({"reference": full_url}, [(b"x", "text/plain")], patient_entry=entry)
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(services, before, response, 412, says="ifNoneExist")


def test_a_conditional_reference_finds_the_patient_the_same_transaction_creates(
    client, tokens
) -> None:
    """FHIR resolves conditional references after the transaction's creates."""
    ins_value = ins(8)
    _, entry = patient_entry(patient_resource(ins_value))
    subject = {"reference": f"Patient?identifier={INS_SYSTEM}|{ins_value}"}
    bundle = provide_bundle(subject, [(b"x", "text/plain")], patient_entry=entry)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert response.status_code == 200, response.text
    assert response_entries(response)[1]["status"] == "201 Created"


def test_a_subject_pointing_at_a_non_patient_entry_is_refused(client, tokens, services) -> None:
    patient_id, _ = create_patient(client, tokens)
    bundle = provide_bundle({"reference": f"Patient/{patient_id}"}, [(b"x", "text/plain")])
    bundle["entry"][1]["resource"]["subject"] = {"reference": bundle["entry"][2]["fullUrl"]}
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(
        services,
        before,
        response,
        422,
        says="reference a Patient",
        where="Bundle.entry[1].resource.subject",
    )


# -- one submission, one patient ----------------------------------------------------------


def test_documents_of_another_patient_in_one_submission_are_refused(
    client, tokens, services
) -> None:
    first, _ = create_patient(client, tokens, seed=1)
    second, _ = create_patient(client, tokens, seed=2)
    bundle = provide_bundle(
        {"reference": f"Patient/{first}"}, [(b"one", "text/plain"), (b"two", "text/plain")]
    )
    bundle["entry"][3]["resource"]["subject"] = {"reference": f"Patient/{second}"}
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(
        services,
        before,
        response,
        422,
        says="same patient",
        where="Bundle.entry[3].resource.subject",
    )


def test_a_patient_entry_for_someone_else_than_the_submission_is_refused(
    client, tokens, services
) -> None:
    patient_id, _ = create_patient(client, tokens, seed=1)
    _, entry = patient_entry(patient_resource(ins(2)))
    bundle = provide_bundle(
        {"reference": f"Patient/{patient_id}"}, [(b"x", "text/plain")], patient_entry=entry
    )
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(services, before, response, 422, says="not the patient of the submission")


def test_two_patient_entries_in_one_submission_are_refused(client, tokens, services) -> None:
    full_url, entry = patient_entry(patient_resource(ins(1)))
    _, other = patient_entry(patient_resource(ins(2)))
    bundle = provide_bundle({"reference": full_url}, [(b"x", "text/plain")], patient_entry=entry)
    bundle["entry"].append(other)
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(services, before, response, 422, says="at most one Patient")


def test_a_patch_of_another_patients_document_in_a_submission_is_refused(
    client, tokens, services
) -> None:
    first, _ = create_patient(client, tokens, seed=1)
    second, second_ins = create_patient(client, tokens, seed=2)
    theirs = publish(client, tokens, {"reference": f"Patient/{second}"}).json()
    bundle = provide_bundle({"reference": f"Patient/{first}"}, [(b"x", "text/plain")])
    bundle["entry"].append(
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "operation",
                        "part": [
                            {"name": "type", "valueCode": "replace"},
                            {"name": "path", "valueString": "DocumentReference.status"},
                            {"name": "value", "valueCode": "superseded"},
                        ],
                    }
                ],
            },
            "request": {"method": "PATCH", "url": f"DocumentReference/{theirs['id']}"},
        }
    )
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(
        services, before, response, 422, says="another patient", where="Bundle.entry[3].request.url"
    )
    headers = {k: v for k, v in tokens.patient(second_ins).items() if k != "Content-Type"}
    current = client.get(f"/fhir/DocumentReference/{theirs['id']}", headers=headers).json()
    assert current["status"] == "current"
