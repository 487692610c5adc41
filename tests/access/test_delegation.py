"""Caregiver delegation: a scope (read, or read and upload), document categories, a
mandatory expiry of at most a year, instant revocation; never masked documents, never
re-delegation, and every caregiver action on the patient's record for them to see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.access.policy_support import (
    MASKED,
    audit_entries,
    grant,
    policy_url,
    publish_document,
    sees,
)
from tests.factories import CLASS_SYSTEM, OTHER_DOCTOR, create_patient, document_reference

CAREGIVER = "aidant-42"


@pytest.fixture
def record(client, tokens):
    """A patient with a report (category 10), a prescription (category 11) and a masked
    report, all from a professional."""
    patient_id, patient_ins = create_patient(client, tokens)
    author = tokens.professional(OTHER_DOCTOR)
    report, report_binary = publish_document(client, author, patient_id, category="10")
    prescription, _ = publish_document(
        client, author, patient_id, type_code="57833-6", category="11"
    )
    masked, _ = publish_document(client, author, patient_id, labels=(MASKED,))
    return {
        "patient_id": patient_id,
        "own": tokens.patient(patient_ins),
        "report": report,
        "report_binary": report_binary,
        "prescription": prescription,
        "masked": masked,
    }


def _upload(client, headers, patient_id, category: str):
    resource = document_reference({"reference": f"Patient/{patient_id}"}, b"%PDF-1.7 ordonnance")
    resource["category"] = [{"coding": [{"system": CLASS_SYSTEM, "code": category}]}]
    return client.post("/fhir/DocumentReference", json=resource, headers=headers)


def test_a_caregiver_reads_the_delegated_categories_and_never_a_masked_document(
    client, tokens, record
):
    caregiver = tokens.caregiver(CAREGIVER)
    patient_id = record["patient_id"]
    assert not sees(client, caregiver, record["report"])

    response = grant(client, record["own"], patient_id, CAREGIVER, categories=("10",))
    assert response.status_code == 201, response.text
    assert response.json()["grantee"] == {"system": "urn:vault:caregiver", "value": CAREGIVER}

    assert sees(client, caregiver, record["report"])
    assert client.get(f"/fhir/Binary/{record['report_binary']}", headers=caregiver).content
    assert not sees(client, caregiver, record["prescription"])
    assert not sees(client, caregiver, record["masked"])
    found = client.get(f"/fhir/DocumentReference?patient={patient_id}", headers=caregiver)
    assert [entry["resource"]["id"] for entry in found.json()["entry"]] == [record["report"]]


def test_every_caregiver_action_is_recorded_under_the_delegation_for_the_patient(
    client, tokens, record, services
):
    patient_id = record["patient_id"]
    delegation = grant(client, record["own"], patient_id, CAREGIVER).json()["id"]
    caregiver = tokens.caregiver(CAREGIVER)
    sees(client, caregiver, record["report"])
    sees(client, caregiver, record["masked"])

    acts = [e for e in audit_entries(services, patient_id) if e.actor_role == "caregiver"]
    assert [(e.outcome, e.resource_id) for e in acts] == [
        ("success", record["report"]),
        ("denied", record["masked"]),
    ]
    assert acts[0].purpose == "SUPNWK"
    assert acts[0].detail["delegation"] == delegation
    assert acts[0].actor_id == CAREGIVER
    # The patient reads them in their access history.
    history = client.get(f"/fhir/AuditEvent?patient={patient_id}", headers=record["own"])
    assert history.status_code == 200
    assert CAREGIVER in history.text


def test_only_a_read_and_upload_delegation_uploads_and_only_in_its_categories(
    client, tokens, record
):
    patient_id = record["patient_id"]
    caregiver = tokens.caregiver(CAREGIVER)
    grant(client, record["own"], patient_id, CAREGIVER, scope="read", categories=("11",))
    assert _upload(client, caregiver, patient_id, "11").status_code == 404

    other = "aidant-43"
    grant(client, record["own"], patient_id, other, scope="read-upload", categories=("11",))
    uploader = tokens.caregiver(other)
    assert _upload(client, uploader, patient_id, "10").status_code == 404
    uploaded = _upload(client, uploader, patient_id, "11")
    assert uploaded.status_code == 201, uploaded.text
    document_id = uploaded.json()["id"]
    # What the caregiver uploaded is theirs to withdraw; the patient sees it.
    assert sees(client, record["own"], document_id)
    assert (
        client.delete(f"/fhir/DocumentReference/{document_id}", headers=uploader).status_code == 204
    )


def test_revocation_takes_effect_at_once_by_the_patient_or_by_the_caregiver(client, tokens, record):
    patient_id, own = record["patient_id"], record["own"]
    caregiver = tokens.caregiver(CAREGIVER)
    first = grant(client, own, patient_id, CAREGIVER).json()["id"]
    assert sees(client, caregiver, record["report"])
    revoked = client.delete(policy_url(patient_id, f"/delegations/{first}"), headers=own)
    assert revoked.status_code == 204
    assert not sees(client, caregiver, record["report"])
    assert (
        client.delete(policy_url(patient_id, f"/delegations/{first}"), headers=own).status_code
        == 404
    )

    second = grant(client, own, patient_id, CAREGIVER).json()["id"]
    assert sees(client, caregiver, record["report"])
    given_up = client.delete(policy_url(patient_id, f"/delegations/{second}"), headers=caregiver)
    assert given_up.status_code == 204
    assert not sees(client, caregiver, record["report"])


def test_a_caregiver_cannot_redelegate_nor_change_nor_read_the_policy(client, tokens, record):
    patient_id, own = record["patient_id"], record["own"]
    caregiver = tokens.caregiver(CAREGIVER)
    grant(client, own, patient_id, CAREGIVER, scope="read-upload")
    assert grant(client, caregiver, patient_id, "friend-of-caregiver").status_code == 404
    block = client.post(
        policy_url(patient_id, "/blocks"),
        json={"professional": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": OTHER_DOCTOR}},
        headers=caregiver,
    )
    assert block.status_code == 404
    assert client.get(policy_url(patient_id), headers=caregiver).status_code == 404
    mask = client.post(
        policy_url(patient_id, "/masks"), json={"document": record["report"]}, headers=caregiver
    )
    assert mask.status_code == 403
    # Someone else's delegation is not the caregiver's to end.
    other = grant(client, own, patient_id, "aidant-99").json()["id"]
    assert (
        client.delete(
            policy_url(patient_id, f"/delegations/{other}"), headers=caregiver
        ).status_code
        == 404
    )


def test_a_delegation_needs_an_expiry_within_a_year_and_named_categories(client, record):
    patient_id, own = record["patient_id"], record["own"]
    url = policy_url(patient_id, "/delegations")
    now = datetime.now(UTC)
    base = {"caregiver": CAREGIVER, "scope": "read", "categories": ["*"]}
    cases = [
        ({**base}, 400),  # no expiry
        ({**base, "expires": (now + timedelta(days=400)).isoformat()}, 422),
        ({**base, "expires": (now - timedelta(days=1)).isoformat()}, 422),
        ({**base, "expires": (now + timedelta(days=30)).isoformat(), "categories": []}, 422),
        ({**base, "expires": (now + timedelta(days=30)).isoformat(), "scope": "write"}, 400),
        ({**base, "expires": "2027-01-01T00:00:00"}, 400),  # no time zone
    ]
    for body, status in cases:
        response = client.post(url, json=body, headers=own)
        assert response.status_code == status, (body, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get(policy_url(patient_id), headers=own).json()["delegations"] == []
    a_year = client.post(
        url, json={**base, "expires": (now + timedelta(days=364)).isoformat()}, headers=own
    )
    assert a_year.status_code == 201


def test_a_caregiver_lists_the_records_delegated_to_them(client, tokens, record):
    patient_id, own = record["patient_id"], record["own"]
    delegation = grant(client, own, patient_id, CAREGIVER, categories=("10", "11")).json()
    grant(client, own, patient_id, "someone-else")
    mine = client.get("/api/me/relationships", headers=tokens.caregiver(CAREGIVER))
    assert mine.status_code == 200
    assert mine.json() == [{"patient": patient_id, "relationship": delegation}]
    assert client.get("/api/me/relationships", headers=tokens.caregiver("nobody")).json() == []


def test_a_delegation_expiring_in_another_time_zone_ends_at_that_instant(client, tokens, record):
    """An expiry sent as +02:00 is the same instant on every backend: SQLite once stored the
    wall-clock digits without the offset, two hours late."""
    patient_id, own = record["patient_id"], record["own"]
    paris_summer = timezone(timedelta(hours=2))
    expires = (datetime.now(UTC) + timedelta(days=30)).astimezone(paris_summer)
    created = client.post(
        policy_url(patient_id, "/delegations"),
        json={
            "caregiver": CAREGIVER,
            "scope": "read",
            "categories": ["*"],
            "expires": expires.isoformat(),
        },
        headers=own,
    )
    assert created.status_code == 201, created.text

    shown = client.get(policy_url(patient_id), headers=own).json()["delegations"]
    kept = datetime.fromisoformat(shown[0]["expires"])
    assert kept == expires
    assert kept.utcoffset() == timedelta(0)
    assert sees(client, tokens.caregiver(CAREGIVER), record["report"])
