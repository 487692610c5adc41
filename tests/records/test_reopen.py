"""Reopening a closed space: the archived documents come back with it, its policy
included, and the history shows the closure and the reopening."""

from __future__ import annotations

from tests.access.policy_support import add_professional, audit_entries, grant, publish_document
from tests.factories import DOCTOR, OTHER_DOCTOR, create_patient


def test_a_reopened_space_has_its_documents_and_policy_back(client, tokens, services):
    patient_id, ins_value = create_patient(client, tokens, seed=61)
    own = tokens.patient(ins_value)
    document_id, binary_id = publish_document(client, tokens.professional(DOCTOR), patient_id)
    assert add_professional(client, own, patient_id, "/care-team", OTHER_DOCTOR).status_code == 201
    assert grant(client, own, patient_id, "aidant-2").status_code == 201
    care_team = tokens.professional(OTHER_DOCTOR)
    assert (
        client.post("/api/patients/me/closure", json={"deleteNow": True}, headers=own).status_code
        == 201
    )
    assert client.get(f"/fhir/DocumentReference/{document_id}", headers=own).status_code == 404

    reopened = client.post("/api/patients/me/reopening", headers=own)

    assert reopened.status_code == 200, reopened.text
    body = reopened.json()
    assert body["status"] == "open"
    assert body["reopenedAt"] is not None
    # A deletion asked for and not yet done is called off.
    assert (body["deletionDueAt"], body["deletionRequestedAt"]) == (None, None)
    for headers in (own, care_team):
        assert (
            client.get(f"/fhir/DocumentReference/{document_id}", headers=headers).status_code == 200
        )
    content = client.get(f"/fhir/Binary/{binary_id}", headers=own)
    assert content.status_code == 200
    assert content.content == b"%PDF-1.7 compte rendu"
    policy = client.get(f"/api/patients/{patient_id}/policy", headers=own)
    assert policy.status_code == 200, policy.text
    assert OTHER_DOCTOR in policy.text
    # The delegation closing ended stays ended: the patient grants it again if they wish.
    caregiver = tokens.caregiver("aidant-2")
    assert (
        client.get(f"/fhir/DocumentReference/{document_id}", headers=caregiver).status_code == 404
    )
    # Pushes are taken again.
    publish_document(client, tokens.professional(DOCTOR), patient_id)
    # The history shows both.
    stages = [
        (entry.detail.get("permission"), entry.detail.get("stage"))
        for entry in audit_entries(services, patient_id)
        if entry.outcome == "success"
    ]
    assert stages.index(("record:close", "closed")) < stages.index(("record:reopen", "reopened"))
    history = client.get(f"/fhir/AuditEvent?patient={patient_id}&_count=100", headers=own)
    assert history.status_code == 200, history.text
    subtypes = {
        coding["code"]
        for entry in history.json().get("entry", [])
        for coding in entry["resource"].get("subtype", [])
    }
    assert {"deactivate", "reactivate"} <= subtypes


def test_only_a_closed_space_is_reopened_by_its_holder(client, tokens):
    patient_id, ins_value = create_patient(client, tokens, seed=62)
    _other, other_ins = create_patient(client, tokens, seed=63)
    own = tokens.patient(ins_value)

    assert client.post("/api/patients/me/reopening", headers=own).status_code == 409
    assert client.post("/api/patients/me/closure", headers=own).status_code == 201
    for headers in (tokens.patient(other_ins), tokens.professional(DOCTOR), tokens.operator()):
        refused = client.post(f"/api/patients/{patient_id}/reopening", headers=headers)
        assert refused.status_code == 404, refused.text
    assert client.post(f"/api/patients/{patient_id}/reopening", headers=own).status_code == 200
