"""Consent declared at the point of care (issue 12, item 4): the declaring professional
joins the care team as in the DMP, but reads only what their profession's matrix allows;
the patient sees each declaration at once (history, notification) and can block its author
and end it in one step; the duration is a setting; and a patient who refused access they
do not grant themselves (the emergency-access refusal) is not opened by a declaration."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from tests.access.policy_support import policy_url, publish_document, sees
from tests.factories import OTHER_DOCTOR, create_patient
from vault.models import AuditNotification

PHARMACIST = "810000000021"
REPORT = "34133-9"  # a summary of an episode: not a pharmacist's to read
PRESCRIPTION = "57833-6"


def _declare(client, headers, patient_id: str):
    return client.post(
        f"/api/patients/{patient_id}/point-of-care-consent",
        json={"patientInformed": True, "patientAgreed": True},
        headers=headers,
    )


def test_a_declaring_pharmacist_reads_what_pharmacists_read_and_nothing_more(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    author = tokens.professional(OTHER_DOCTOR)
    report, _ = publish_document(client, author, patient_id, type_code=REPORT)
    prescription, _ = publish_document(
        client, author, patient_id, type_code=PRESCRIPTION, category="11"
    )
    pharmacist = tokens.professional(PHARMACIST, profession="21")
    assert _declare(client, pharmacist, patient_id).status_code == 201
    assert sees(client, pharmacist, prescription)
    assert not sees(client, pharmacist, report)


def test_the_patient_sees_a_declaration_at_once_and_is_notified(client, tokens, services):
    patient_id, patient_ins = create_patient(client, tokens)
    declared = _declare(client, tokens.professional(PHARMACIST, profession="21"), patient_id)
    assert declared.status_code == 201, declared.text
    # The duration is the setting's (VAULT_POINT_OF_CARE_DAYS).
    body = declared.json()
    lasts = services.settings.point_of_care_days
    assert body["expires"] is not None
    span = datetime.fromisoformat(body["expires"]) - datetime.fromisoformat(body["since"])
    assert span == timedelta(days=lasts)

    history = client.get(
        f"/fhir/AuditEvent?patient={patient_id}", headers=tokens.patient(patient_ins)
    ).json()
    consents = [
        event["resource"]
        for event in history["entry"]
        if any(
            entity.get("what", {}).get("reference") == f"Consent/{body['id']}"
            for entity in event["resource"].get("entity", [])
        )
    ]
    assert len(consents) == 1
    with services.session_factory() as session:
        kinds = session.scalars(
            select(AuditNotification.kind).where(AuditNotification.patient_id == patient_id)
        ).all()
    assert "point-of-care-declared" in kinds


def test_one_step_blocks_the_declarer_and_ends_their_consent(client, tokens):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), patient_id)
    pharmacist = tokens.professional(PHARMACIST, profession="21")
    assert _declare(client, pharmacist, patient_id).status_code == 201
    assert sees(client, pharmacist, document_id)

    blocked = client.post(policy_url(patient_id, f"/point-of-care/{PHARMACIST}/block"), headers=own)
    assert blocked.status_code == 201, blocked.text
    assert blocked.json()["kind"] == "block"
    assert not sees(client, pharmacist, document_id)
    policy = client.get(policy_url(patient_id), headers=own).json()
    assert policy["pointOfCare"] == []
    assert [entry["professional"]["value"] for entry in policy["blocked"]] == [PHARMACIST]
    # One policy change, not two: both happen together or not at all.
    history = client.get(policy_url(patient_id, "/history"), headers=own).json()
    assert {
        (event["change"], event["entry"]["kind"])
        for event in history
        if event["version"] == policy["version"]
    } == {
        ("end", "point-of-care"),
        ("add", "block"),
    }
    # And the blocked professional cannot declare again.
    assert _declare(client, pharmacist, patient_id).status_code == 404


def test_a_refusal_of_emergency_access_also_refuses_and_suspends_point_of_care_declarations(
    client, tokens
):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), patient_id)
    earlier = tokens.professional("810000000031")
    assert _declare(client, earlier, patient_id).status_code == 201
    assert sees(client, earlier, document_id)

    refusal = client.put(
        policy_url(patient_id, "/emergency-access-refusal"), json={"refused": True}, headers=own
    )
    assert refusal.status_code == 200
    assert not sees(client, earlier, document_id)
    assert _declare(client, tokens.professional("810000000032"), patient_id).status_code == 404
    # The patient's own choice still opens the record.
    added = client.post(
        policy_url(patient_id, "/care-team"),
        json={"professional": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810000000032"}},
        headers=own,
    )
    assert added.status_code == 201
    assert sees(client, tokens.professional("810000000032"), document_id)
