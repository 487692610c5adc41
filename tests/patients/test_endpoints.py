"""POST /fhir/Patient (conditional on If-None-Exist) and GET /fhir/Patient/{id}."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.factories import INS_SYSTEM, create_patient, ins, patient_resource
from vault.models import Patient

TEST_INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"


def _patients(services) -> int:
    with services.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Patient)) or 0)


def _id_of(response) -> str:
    return response.headers["Location"].split("/Patient/")[1].split("/")[0]


def test_a_patient_opens_their_record_and_reads_it_back(client, tokens):
    ins_value = ins(1)
    headers = tokens.patient(ins_value)

    created = client.post("/fhir/Patient", json=patient_resource(ins_value), headers=headers)

    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == 'W/"1"'
    assert created.headers["Location"].startswith("http://testserver/fhir/Patient/")
    assert created.json()["identifier"] == [{"system": INS_SYSTEM, "value": ins_value}]
    read = client.get(f"/fhir/Patient/{_id_of(created)}", headers=headers)
    assert read.status_code == 200
    assert read.headers["ETag"] == 'W/"1"'
    assert read.json()["id"] == _id_of(created)
    assert read.json()["name"] == [{"family": "Martin", "given": ["Claire"]}]


def test_if_none_exist_returns_the_existing_record_without_creating_one(client, tokens, services):
    ins_value = ins(1)
    headers = {**tokens.patient(ins_value), "If-None-Exist": f"identifier={INS_SYSTEM}|{ins_value}"}
    first = client.post("/fhir/Patient", json=patient_resource(ins_value), headers=headers)

    again = client.post(
        "/fhir/Patient", json=patient_resource(ins_value, family="Other"), headers=headers
    )

    assert first.status_code == 201
    assert again.status_code == 200
    assert _id_of(again) == _id_of(first)
    assert _patients(services) == 1
    read = client.get(f"/fhir/Patient/{_id_of(first)}", headers=tokens.patient(ins_value))
    assert read.json()["name"][0]["family"] == "Martin"


def test_the_test_ins_namespace_names_the_same_person(client, tokens, services):
    ins_value = ins(1)
    created_id, _ = create_patient(client, tokens)
    body = patient_resource(ins_value)
    body["identifier"][0]["system"] = TEST_INS_SYSTEM

    again = client.post(
        "/fhir/Patient",
        json=body,
        headers={
            **tokens.professional(),
            "If-None-Exist": f"identifier={TEST_INS_SYSTEM}|{ins_value}",
        },
    )

    assert again.status_code == 200
    assert _id_of(again) == created_id
    assert _patients(services) == 1


def test_a_professional_creates_a_record_the_patient_then_reads(client, tokens):
    ins_value = ins(3)

    created = client.post(
        "/fhir/Patient",
        json=patient_resource(ins_value),
        headers={**tokens.professional(), "If-None-Exist": f"identifier={INS_SYSTEM}|{ins_value}"},
    )

    assert created.status_code == 201, created.text
    # The professional learns where the record is, not what it holds.
    assert created.json()["resourceType"] == "OperationOutcome"
    read = client.get(f"/fhir/Patient/{_id_of(created)}", headers=tokens.patient(ins_value))
    assert read.status_code == 200
    assert read.json()["identifier"][0]["value"] == ins_value


def test_an_if_none_exist_naming_someone_else_answers_412(client, tokens, services):
    ins_value = ins(1)

    response = client.post(
        "/fhir/Patient",
        json=patient_resource(ins_value),
        headers={**tokens.professional(), "If-None-Exist": f"identifier={INS_SYSTEM}|{ins(2)}"},
    )

    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"
    assert _patients(services) == 0


@pytest.mark.parametrize("condition", ["name=Martin", "identifier=a&identifier=b", "identifier"])
def test_an_unsupported_if_none_exist_answers_400(client, tokens, condition, services):
    response = client.post(
        "/fhir/Patient",
        json=patient_resource(ins(1)),
        headers={**tokens.professional(), "If-None-Exist": condition},
    )

    assert response.status_code == 400
    assert _patients(services) == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"resourceType": "Patient", "name": [{"family": "Sans INS"}]}, 422),
        (
            {"resourceType": "Patient", "identifier": [{"system": INS_SYSTEM, "value": "12345"}]},
            422,
        ),
        ({**patient_resource(ins(1)), "birthDate": "the fourteenth of July"}, 422),
        ({"resourceType": "Observation", "status": "final"}, 400),
        ({"name": "no resourceType"}, 400),
    ],
)
def test_a_patient_resource_that_does_not_validate_is_refused(
    client, tokens, services, body, status
):
    response = client.post("/fhir/Patient", json=body, headers=tokens.professional())

    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert _patients(services) == 0


def test_the_ans_patient_without_ins_is_refused(client, tokens, corpus, services):
    body = json.loads((corpus / "ans-pdsm" / "Patient-fr-patient-123.json").read_text())

    response = client.post("/fhir/Patient", json=body, headers=tokens.professional())

    assert response.status_code == 422
    assert "INS" in response.json()["issue"][0]["diagnostics"]
    assert _patients(services) == 0


def test_another_patients_record_is_invisible(client, tokens):
    patient_id, _ = create_patient(client, tokens, seed=1)
    _, other_ins = create_patient(client, tokens, seed=2)

    seen = client.get(f"/fhir/Patient/{patient_id}", headers=tokens.patient(other_ins))
    absent = client.get("/fhir/Patient/no-such-id", headers=tokens.patient(other_ins))

    assert seen.status_code == 404
    assert seen.json() == absent.json()


def test_a_professional_cannot_read_a_patients_record(client, tokens):
    patient_id, _ = create_patient(client, tokens)

    response = client.get(f"/fhir/Patient/{patient_id}", headers=tokens.professional())

    assert response.status_code == 404


def test_a_patient_cannot_create_or_locate_someone_elses_record(client, tokens, services):
    """Whether the other person has a record or not, the answer is the same."""
    create_patient(client, tokens, seed=1)
    intruder = tokens.patient(ins(2))

    existing = client.post("/fhir/Patient", json=patient_resource(ins(1)), headers=intruder)
    absent = client.post("/fhir/Patient", json=patient_resource(ins(3)), headers=intruder)

    assert existing.status_code == 404
    assert existing.json() == absent.json()
    assert "Location" not in existing.headers
    assert _patients(services) == 1


def test_two_creations_of_one_record_at_once_leave_one_record(client, tokens, services):
    ins_value = ins(5)
    headers = {**tokens.professional(), "If-None-Exist": f"identifier={INS_SYSTEM}|{ins_value}"}
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def create(index: int) -> None:
        barrier.wait()
        results[index] = client.post(
            "/fhir/Patient", json=patient_resource(ins_value), headers=headers
        )

    threads = [threading.Thread(target=create, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.status_code for r in results) in ([200, 201], [201, 409])
    assert _patients(services) == 1


def test_the_ins_is_not_stored_in_clear(client, tokens, services):
    ins_value = ins(7)
    create_patient(client, tokens, seed=7)

    with services.engine.connect() as connection:
        row = connection.exec_driver_sql("SELECT * FROM patients").one()
    for value in row:
        raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        assert ins_value.encode() not in raw
