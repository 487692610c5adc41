"""Closing a space over HTTP: from then on nobody reads the record (the patient, their
professionals, their caregivers, emergency access), delegations end, every push for the
patient is refused saying the space is closed and nothing of it is stored; the data stays,
encrypted; every step is in the audit log."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from tests.access.policy_support import (
    add_professional,
    audit_entries,
    declare_emergency,
    grant,
    publish_document,
)
from tests.factories import (
    DOCTOR,
    OTHER_DOCTOR,
    create_patient,
    document_reference,
    patient_resource,
    provide_bundle,
)
from vault.models import AccessPolicyEntry, AuditNotification, Document, PatientKey
from vault.models.base import utcnow

EMERGENCY_DOCTOR = "810001111111"


def _count(services, model, *where) -> int:
    with services.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _record(client, tokens, seed=41):
    patient_id, ins_value = create_patient(client, tokens, seed=seed)
    own = tokens.patient(ins_value)
    doctor = tokens.professional(DOCTOR)
    document_id, binary_id = publish_document(client, doctor, patient_id)
    assert add_professional(client, own, patient_id, "/care-team", OTHER_DOCTOR).status_code == 201
    granted = grant(client, own, patient_id, "aidant-1")
    assert granted.status_code == 201, granted.text
    return patient_id, ins_value, document_id, binary_id


def test_closing_the_space_stops_every_reader_and_every_push(client, tokens, services):
    patient_id, ins_value, document_id, binary_id = _record(client, tokens)
    own = tokens.patient(ins_value)
    care_team = tokens.professional(OTHER_DOCTOR)
    caregiver = tokens.caregiver("aidant-1")
    for headers in (own, care_team, caregiver):
        assert (
            client.get(f"/fhir/DocumentReference/{document_id}", headers=headers).status_code == 200
        )

    closed = client.post("/api/patients/me/closure", headers=own)

    assert closed.status_code == 201, closed.text
    body = closed.json()
    assert body["status"] == "closed"
    assert body["deletionRequestedAt"] is None
    assert body["retentionUntil"] == body["deletionDueAt"]
    assert body["retentionUntil"] > (utcnow() + timedelta(days=3649)).isoformat()
    # Nobody reads it: the patient, the care team, the caregiver, an emergency.
    for headers in (own, care_team, caregiver):
        assert (
            client.get(f"/fhir/DocumentReference/{document_id}", headers=headers).status_code == 404
        )
        assert client.get(f"/fhir/Binary/{binary_id}", headers=headers).status_code == 404
        page = client.get(f"/fhir/DocumentReference?patient={patient_id}", headers=headers)
        assert page.status_code in (200, 404)
        assert not page.json().get("entry")
    assert client.get(f"/fhir/Patient/{patient_id}", headers=own).status_code == 404
    assert client.get(f"/api/patients/{patient_id}/policy", headers=own).status_code == 404
    emergency = declare_emergency(client, tokens.professional(EMERGENCY_DOCTOR), patient_id)
    assert emergency.status_code == 404
    # The delegation ended with the closure.
    with services.session_factory() as session:
        delegation = session.scalars(
            select(AccessPolicyEntry).where(
                AccessPolicyEntry.patient_id == patient_id, AccessPolicyEntry.kind == "delegation"
            )
        ).one()
        assert delegation.ended_at is not None
    # The data stays, encrypted: documents and keys untouched.
    assert _count(services, Document, Document.patient_id == patient_id) == 1
    assert _count(services, Document, Document.deleted_at.is_not(None)) == 0
    assert _count(services, PatientKey, PatientKey.patient_id == patient_id) >= 1
    # Where it stands, for its holder.
    status = client.get(f"/api/patients/{patient_id}/closure", headers=own)
    assert status.status_code == 200
    assert status.json()["status"] == "closed"
    assert client.post("/api/patients/me/closure", headers=own).status_code == 409


def test_pushes_into_a_closed_space_are_refused_and_nothing_is_stored(client, tokens, services):
    patient_id, ins_value, _document_id, _binary_id = _record(client, tokens, seed=42)
    assert (
        client.post("/api/patients/me/closure", headers=tokens.patient(ins_value)).status_code
        == 201
    )
    doctor = tokens.professional(DOCTOR)
    documents = _count(services, Document)
    subject = {"reference": f"Patient/{patient_id}"}

    pushes = [
        client.post("/fhir/DocumentReference", json=document_reference(subject), headers=doctor),
        client.post(
            "/fhir",
            json=provide_bundle(subject, [(b"%PDF-1.7 cr", "application/pdf")]),
            headers=doctor,
        ),
        client.post(
            "/fhir/DocumentReference",
            json=document_reference(
                {"identifier": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": ins_value}}
            ),
            headers=tokens.software(on_behalf_of=DOCTOR),
        ),
        client.post("/fhir/Patient", json=patient_resource(ins_value), headers=doctor),
        client.post(
            "/fhir/DocumentReference",
            json=document_reference(subject),
            headers=tokens.patient(ins_value),
        ),
    ]

    for response in pushes:
        assert response.status_code == 409, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "business-rule"
        assert "space is closed" in outcome["issue"][0]["diagnostics"]
    assert _count(services, Document) == documents
    # Someone who could not push before (a blocked professional would not) learns nothing:
    # a caregiver whose delegation ended is refused as before, as for what does not exist.
    refused = client.post(
        "/fhir/DocumentReference",
        json=document_reference(subject),
        headers=tokens.caregiver("aidant-1"),
    )
    assert refused.status_code == 404


def test_closure_is_the_holders_alone_and_every_step_is_on_record(client, tokens, services):
    patient_id, ins_value, _document_id, _binary_id = _record(client, tokens, seed=43)
    _other_id, other_ins = create_patient(client, tokens, seed=44)
    for headers in (
        tokens.patient(other_ins),
        tokens.professional(OTHER_DOCTOR),
        tokens.caregiver("aidant-1"),
        tokens.operator(),
    ):
        refused = client.post(f"/api/patients/{patient_id}/closure", headers=headers)
        assert refused.status_code == 404, refused.text
    assert (
        client.post(
            "/api/patients/no-such-record/closure", headers=tokens.patient(ins_value)
        ).status_code
        == 404
    )

    assert (
        client.post(
            f"/api/patients/{patient_id}/closure", headers=tokens.patient(ins_value)
        ).status_code
        == 201
    )

    entries = [
        (entry.detail.get("permission"), entry.detail.get("stage"), entry.outcome)
        for entry in audit_entries(services, patient_id)
        if str(entry.detail.get("permission", "")).startswith("record:")
    ]
    assert ("record:close", "closed", "success") in entries
    assert ("record:close", "archived", "success") in entries
    assert ("record:close", "closed", "denied") in entries
    with services.session_factory() as session:
        told = session.scalars(
            select(AuditNotification.kind).where(AuditNotification.patient_id == patient_id)
        ).all()
    assert "space-closed" in told
