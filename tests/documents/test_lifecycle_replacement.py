"""Replacement (relatesTo replaces), through ITI-105 and ITI-65: the old document is
superseded in the same transaction that stores the new one, or not at all."""

from __future__ import annotations

import json
import threading
from typing import Any

from tests.factories import (
    OTHER_DOCTOR,
    create_patient,
    document_reference,
    provide_bundle,
    publish,
)


def _replacement(patient_id: str, old_id: str, content: bytes = b"%PDF-1.7 v2") -> dict[str, Any]:
    body = document_reference({"reference": f"Patient/{patient_id}"}, content)
    body["relatesTo"] = [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{old_id}"}}
    ]
    return body


def _read(client, headers, document_id: str, version: int | None = None) -> Any:
    suffix = f"/_history/{version}" if version else ""
    return client.get(f"/fhir/DocumentReference/{document_id}{suffix}", headers=headers)


def test_a_replacement_supersedes_the_old_document_with_a_new_version(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    old = publish(client, tokens.professional(), patient_id)

    response = client.post(
        "/fhir/DocumentReference",
        json=_replacement(patient_id, old["id"]),
        headers=tokens.professional(),
    )

    assert response.status_code == 201, response.text
    new = response.json()
    assert new["relatesTo"][0]["target"]["reference"] == f"DocumentReference/{old['id']}"
    patient = tokens.patient(ins_value)
    superseded = _read(client, patient, old["id"])
    assert superseded.json()["status"] == "superseded"
    assert superseded.json()["meta"]["versionId"] == "2"
    assert superseded.headers["ETag"] == 'W/"2"'
    assert _read(client, patient, old["id"], 1).json()["status"] == "current"
    current = client.get(
        f"/fhir/DocumentReference?patient={patient_id}&status=current", headers=patient
    )
    assert [entry["resource"]["id"] for entry in current.json()["entry"]] == [new["id"]]


def test_a_provide_bundle_with_the_mhd_patch_supersedes_the_old_document_once(
    client, tokens, corpus
):
    patient_id, ins_value = create_patient(client, tokens)
    old = publish(client, tokens.professional(), patient_id)
    bundle = provide_bundle({"reference": f"Patient/{patient_id}"}, [(b"v2", "text/plain")])
    bundle["entry"][1]["resource"]["relatesTo"] = [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{old['id']}"}}
    ]
    patch = json.loads((corpus / "ihe-mhd" / "Parameters-ex-patchParameters.json").read_text())
    bundle["entry"].append(
        {"resource": patch, "request": {"method": "PATCH", "url": f"DocumentReference/{old['id']}"}}
    )

    response = client.post("/fhir", json=bundle, headers=tokens.professional())

    assert response.status_code == 200, response.text
    assert response.json()["entry"][-1]["response"]["status"] == "200 OK"
    history = client.get(
        f"/fhir/DocumentReference/{old['id']}/_history", headers=tokens.patient(ins_value)
    )
    assert [entry["resource"]["status"] for entry in history.json()["entry"]] == [
        "superseded",
        "current",
    ]


def test_when_the_new_document_fails_the_old_one_stays_current(client, tokens, services):
    patient_id, ins_value = create_patient(client, tokens)
    old = publish(client, tokens.professional(), patient_id)
    bundle = provide_bundle(
        {"reference": f"Patient/{patient_id}"}, [(b"v2", "text/plain"), (b"other", "text/plain")]
    )
    bundle["entry"][1]["resource"]["relatesTo"] = [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{old['id']}"}}
    ]
    # The second document's declared hash does not match its bytes: the whole bundle fails
    # after the first one has already superseded the old document inside the transaction.
    bundle["entry"][3]["resource"]["content"][0]["attachment"]["hash"] = (
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    )

    response = client.post("/fhir", json=bundle, headers=tokens.professional())

    assert response.status_code == 422, response.text
    still = _read(client, tokens.patient(ins_value), old["id"])
    assert still.json()["status"] == "current"
    assert still.json()["meta"]["versionId"] == "1"
    found = client.get(
        f"/fhir/DocumentReference?patient={patient_id}", headers=tokens.patient(ins_value)
    )
    assert [entry["resource"]["id"] for entry in found.json()["entry"]] == [old["id"]]


def test_a_professional_who_may_not_change_the_old_document_cannot_replace_it(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    old = publish(client, tokens.professional(), patient_id)

    refused = client.post(
        "/fhir/DocumentReference",
        json=_replacement(patient_id, old["id"]),
        headers=tokens.professional(OTHER_DOCTOR),
    )
    absent = client.post(
        "/fhir/DocumentReference",
        json=_replacement(patient_id, "no-such-document"),
        headers=tokens.professional(OTHER_DOCTOR),
    )

    assert refused.status_code == 404
    assert refused.json() == absent.json()
    patient = tokens.patient(ins_value)
    assert _read(client, patient, old["id"]).json()["status"] == "current"
    found = client.get(f"/fhir/DocumentReference?patient={patient_id}", headers=patient)
    assert len(found.json()["entry"]) == 1


def test_a_patient_cannot_replace_a_professionals_document(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    old = publish(client, tokens.professional(), patient_id)

    response = client.post(
        "/fhir/DocumentReference",
        json=_replacement(patient_id, old["id"]),
        headers=tokens.patient(ins_value),
    )

    assert response.status_code in (403, 404)
    assert _read(client, tokens.patient(ins_value), old["id"]).json()["status"] == "current"


def test_a_patient_replaces_a_document_they_uploaded(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    patient = tokens.patient(ins_value)
    old = publish(client, patient, patient_id, b"directives, first draft")

    response = client.post(
        "/fhir/DocumentReference",
        json=_replacement(patient_id, old["id"], b"directives, signed"),
        headers=patient,
    )

    assert response.status_code == 201, response.text
    assert _read(client, patient, old["id"]).json()["status"] == "superseded"


def test_replacing_another_patients_document_looks_like_replacing_nothing(client, tokens):
    patient_id, _ = create_patient(client, tokens, seed=1)
    other_id, _ = create_patient(client, tokens, seed=2)
    others = publish(client, tokens.professional(), other_id)

    refused = client.post(
        "/fhir/DocumentReference",
        json=_replacement(patient_id, others["id"]),
        headers=tokens.professional(),
    )
    absent = client.post(
        "/fhir/DocumentReference",
        json=_replacement(patient_id, "no-such-document"),
        headers=tokens.professional(),
    )

    assert refused.status_code == 404
    assert refused.json() == absent.json()
    read = _read(client, tokens.professional(), others["id"])
    assert read.json()["status"] == "current"


def test_a_superseded_document_cannot_be_replaced_again(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    old = publish(client, tokens.professional(), patient_id)
    first = client.post(
        "/fhir/DocumentReference",
        json=_replacement(patient_id, old["id"]),
        headers=tokens.professional(),
    )
    assert first.status_code == 201

    second = client.post(
        "/fhir/DocumentReference",
        json=_replacement(patient_id, old["id"], b"%PDF-1.7 v3"),
        headers=tokens.professional(),
    )

    assert second.status_code == 409


def test_two_replacements_of_one_document_at_once_leave_one_winner(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    old = publish(client, tokens.professional(), patient_id)
    headers = tokens.professional()
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def replace(index: int) -> None:
        body = _replacement(patient_id, old["id"], f"%PDF-1.7 v2 #{index}".encode())
        barrier.wait()
        results[index] = client.post("/fhir/DocumentReference", json=body, headers=headers)

    threads = [threading.Thread(target=replace, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(response.status_code for response in results) == [201, 409]
    history = client.get(
        f"/fhir/DocumentReference/{old['id']}/_history", headers=tokens.patient(ins_value)
    )
    assert len(history.json()["entry"]) == 2
