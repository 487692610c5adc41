"""Opposing the creation of one's space: the INS kept only as its blind index; every later
push that would create the space is refused, saying why, and nothing of it is stored; the
person may withdraw; every step is on record, with no INS in the log."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.factories import (
    DOCTOR,
    INS_SYSTEM,
    create_patient,
    document_reference,
    ins,
    patient_resource,
    provide_bundle,
)
from vault.models import AuditEntry, Document, Opposition, Patient


def _count(services, model) -> int:
    with services.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_an_opposition_refuses_every_push_until_it_is_withdrawn(client, tokens, services):
    ins_value = ins(71)
    person = tokens.patient(ins_value)
    doctor = tokens.professional(DOCTOR)

    opposed = client.post("/api/oppositions", headers=person)

    assert opposed.status_code == 201, opposed.text
    assert client.post("/api/oppositions", headers=person).status_code == 200
    assert client.get("/api/oppositions/me", headers=person).status_code == 200
    with services.session_factory() as session:
        row = session.scalars(select(Opposition)).one()
        # Only the keyed blind index the patients table uses: no INS in clear.
        assert ins_value.encode() not in row.ins_index
        assert len(row.ins_index) == 32
    by_identifier = {"identifier": {"system": INS_SYSTEM, "value": ins_value}}
    contained = document_reference({"reference": "#p"})
    contained["contained"] = [{**patient_resource(ins_value), "id": "p"}]
    bundle = provide_bundle(
        {"reference": "urn:uuid:3f0f5d33-5a61-4b8e-9a55-7c7cfb3d3e01"},
        [(b"%PDF-1.7 cr", "application/pdf")],
        patient_entry={
            "fullUrl": "urn:uuid:3f0f5d33-5a61-4b8e-9a55-7c7cfb3d3e01",
            "resource": patient_resource(ins_value),
            "request": {"method": "POST", "url": "Patient"},
        },
    )
    pushes = [
        client.post("/fhir/Patient", json=patient_resource(ins_value), headers=doctor),
        client.post("/fhir/DocumentReference", json=contained, headers=doctor),
        client.post("/fhir", json=bundle, headers=doctor),
        client.post("/fhir/Patient", json=patient_resource(ins_value), headers=person),
    ]
    for response in pushes:
        assert response.status_code == 409, response.text
        issue = response.json()["issue"][0]
        assert issue["code"] == "business-rule"
        assert "opposed the creation of their space" in issue["diagnostics"]
    assert _count(services, Patient) == 0
    assert _count(services, Document) == 0
    # Without a space, a push naming the INS alone finds nothing, as before.
    lone = client.post(
        "/fhir/DocumentReference", json=document_reference(by_identifier), headers=doctor
    )
    assert lone.status_code == 422

    assert client.delete("/api/oppositions/me", headers=person).status_code == 204
    assert client.get("/api/oppositions/me", headers=person).status_code == 404
    assert client.delete("/api/oppositions/me", headers=person).status_code == 404
    created = client.post("/fhir/Patient", json=patient_resource(ins_value), headers=doctor)
    assert created.status_code == 201, created.text

    with services.session_factory() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    stages = [
        (entry.detail.get("permission"), entry.detail.get("stage") or entry.detail.get("reason"))
        for entry in entries
    ]
    assert ("record:oppose", "opposed") in stages
    assert ("record:oppose", "withdrawn") in stages
    assert stages.count(("patient:create", "the person opposed their space")) == 4
    for entry in entries:
        assert ins_value not in str(entry.detail)
        assert entry.actor_id != ins_value


def test_only_the_person_without_a_space_opposes(client, tokens):
    _patient_id, ins_value = create_patient(client, tokens, seed=72)

    has_space = client.post("/api/oppositions", headers=tokens.patient(ins_value))
    professional = client.post("/api/oppositions", headers=tokens.professional(DOCTOR))
    caregiver = client.post("/api/oppositions", headers=tokens.caregiver("aidant"))
    narrow = client.post(
        "/api/oppositions",
        headers=tokens.patient(ins(73), scope="patient/DocumentReference.rs"),
    )

    assert has_space.status_code == 409
    assert "close it" in has_space.json()["issue"][0]["diagnostics"]
    assert professional.status_code == 403
    assert caregiver.status_code == 403
    assert narrow.status_code == 403
