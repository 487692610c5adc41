"""Item 7 of issue 12: a document's masterIdentifier and a SubmissionSet's uniqueId are
unique per patient and per sender, so no caller learns from an identifier that another's
submission exists, and no caller can claim a predictable identifier first to make a
laboratory's later push fail."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from tests.factories import OTHER_DOCTOR, create_patient, document_reference, provide_bundle
from vault.models import Document, SubmissionSet

LAB = "810001234567"


def _push(client: Any, headers: dict[str, str], patient_id: str, content: bytes, master: str):
    return client.post(
        "/fhir/DocumentReference",
        json=document_reference({"reference": f"Patient/{patient_id}"}, content, master=master),
        headers=headers,
    )


def _documents_with(services: Any, master: str) -> int:
    with services.session_factory() as session:
        return int(
            session.scalar(select(func.count()).where(Document.master_identifier == master)) or 0
        )


def test_another_patients_master_identifier_neither_conflicts_nor_reveals_it(client, tokens):
    mine, _ = create_patient(client, tokens, 81)
    theirs, _ = create_patient(client, tokens, 82)
    master = f"urn:oid:1.2.250.1.999.1.{uuid.uuid4().int}"
    assert (
        _push(client, tokens.professional(LAB), theirs, b"their report", master).status_code == 201
    )

    reused = _push(client, tokens.professional(OTHER_DOCTOR), mine, b"my report", master)
    fresh = _push(client, tokens.professional(OTHER_DOCTOR), mine, b"my report", f"{master}.1")

    assert reused.status_code == fresh.status_code == 201, reused.text


def test_a_squatted_master_identifier_does_not_block_the_laboratorys_push(client, tokens, services):
    patient_id, _ = create_patient(client, tokens, 83)
    # A predictable identifier: the laboratory's OID root and its next order number.
    master = "urn:oid:1.2.250.1.999.1.20261207.42"
    squatter = _push(client, tokens.professional(OTHER_DOCTOR), patient_id, b"decoy", master)
    assert squatter.status_code == 201

    lab = _push(client, tokens.professional(LAB), patient_id, b"%PDF-1.7 results", master)
    retried = _push(client, tokens.professional(LAB), patient_id, b"%PDF-1.7 results", master)

    assert lab.status_code == 201, lab.text
    assert lab.json()["id"] != squatter.json()["id"]
    # The laboratory's own retry still gets its own document back, never the decoy.
    assert retried.status_code == 200
    assert retried.json()["id"] == lab.json()["id"]
    assert _documents_with(services, master) == 2


def test_the_same_sender_reusing_a_master_identifier_for_other_bytes_is_still_a_conflict(
    client, tokens
):
    patient_id, _ = create_patient(client, tokens, 84)
    master = f"urn:uuid:{uuid.uuid4()}"
    assert _push(client, tokens.professional(LAB), patient_id, b"one", master).status_code == 201
    again = _push(client, tokens.professional(LAB), patient_id, b"two", master)
    assert again.status_code == 409
    assert again.json()["issue"][0]["code"] == "conflict"


def _submit(client: Any, headers: dict[str, str], patient_id: str, content: bytes, unique: str):
    bundle = provide_bundle({"reference": f"Patient/{patient_id}"}, [(content, "text/plain")])
    bundle["entry"][0]["resource"]["identifier"] = [
        {"use": "official", "system": "urn:ietf:rfc:3986", "value": unique}
    ]
    return client.post("/fhir", json=bundle, headers=headers)


def test_a_submission_set_unique_id_is_scoped_to_the_patient_and_the_sender(
    client, tokens, services
):
    mine, _ = create_patient(client, tokens, 85)
    theirs, _ = create_patient(client, tokens, 86)
    unique = "urn:oid:1.2.250.1.999.2.20261207.7"
    assert (
        _submit(client, tokens.professional(OTHER_DOCTOR), theirs, b"a", unique).status_code == 200
    )
    # Another patient's uniqueId: no conflict, nothing learnt.
    assert _submit(client, tokens.professional(OTHER_DOCTOR), mine, b"b", unique).status_code == 200
    # Squatted in this patient's record by another sender: the laboratory's push still lands.
    lab = _submit(client, tokens.professional(LAB), mine, b"c", unique)
    assert lab.status_code == 200, lab.text
    # The same sender reusing it for other documents of the same patient is a conflict.
    assert _submit(client, tokens.professional(LAB), mine, b"d", unique).status_code == 409
    with services.session_factory() as session:
        count = session.scalar(select(func.count()).where(SubmissionSet.unique_id == unique))
    assert count == 3
