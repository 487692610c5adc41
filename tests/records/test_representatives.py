"""A minor's legal representative closes, asks for the deletion of, and reopens the
minor's space, in their own name; while it is closed they read nothing of it either."""

from __future__ import annotations

from tests.access.policy_support import (
    audit_entries,
    create_patient_born,
    policy_url,
    publish_document,
    years_ago,
)
from tests.factories import DOCTOR, INS_SYSTEM, Tokens, ins


def test_a_minors_representative_closes_and_reopens_the_space(client, tokens, services):
    child_id, _child_ins = create_patient_born(client, tokens, 81, years_ago(8))
    operator = Tokens._headers(tokens.issuer.mint("operator", "ops-1", scope="system/Consent.u"))
    registered = client.post(
        policy_url(child_id, "/representatives"),
        json={"representative": {"system": INS_SYSTEM, "value": ins(82)}},
        headers=operator,
    )
    assert registered.status_code == 201, registered.text
    parent = tokens.patient(ins(82))
    document_id, _binary = publish_document(client, tokens.professional(DOCTOR), child_id)
    assert client.get(f"/fhir/DocumentReference/{document_id}", headers=parent).status_code == 200

    closed = client.post(f"/api/patients/{child_id}/closure", headers=parent)

    assert closed.status_code == 201, closed.text
    assert client.get(f"/fhir/DocumentReference/{document_id}", headers=parent).status_code == 404
    asked = client.post(f"/api/patients/{child_id}/closure/deletion", headers=parent)
    assert asked.status_code == 202, asked.text
    status = client.get(f"/api/patients/{child_id}/closure", headers=parent)
    assert status.json()["status"] == "closed"
    reopened = client.post(f"/api/patients/{child_id}/reopening", headers=parent)
    assert reopened.status_code == 200, reopened.text
    assert client.get(f"/fhir/DocumentReference/{document_id}", headers=parent).status_code == 200
    acts = {
        (entry.detail.get("permission"), entry.actor_role)
        for entry in audit_entries(services, child_id)
        if entry.outcome == "success"
    }
    for permission in ("record:close", "record:delete", "record:reopen"):
        assert (permission, "legal-representative") in acts
