"""Who may set which visibility label on a document they upload (issue 12, item 3): a
professional author any; the patient MASQUE_PS and INVISIBLE_REPRESENTANTS_LEGAUX (never
INVISIBLE_PATIENT, a professional's "not yet"); a legal representative MASQUE_PS; a
caregiver none. A refused upload says why, in an OperationOutcome, and stores nothing."""

from __future__ import annotations

import pytest

from tests.access.policy_support import (
    VISIBILITY,
    create_patient_born,
    grant,
    policy_url,
    years_ago,
)
from tests.factories import (
    CLASS_SYSTEM,
    OTHER_DOCTOR,
    Tokens,
    create_patient,
    document_reference,
    ins,
)

LABELS = ("INVISIBLE_PATIENT", "MASQUE_PS", "INVISIBLE_REPRESENTANTS_LEGAUX")


def _upload(client, headers, patient_id: str, *labels: str):
    resource = document_reference({"reference": f"Patient/{patient_id}"}, b"%PDF-1.7 note")
    resource["category"] = [{"coding": [{"system": CLASS_SYSTEM, "code": "10"}]}]
    if labels:
        resource["securityLabel"] = [
            {"coding": [{"system": VISIBILITY, "code": label}]} for label in labels
        ]
    return client.post("/fhir/DocumentReference", json=resource, headers=headers)


def _count(client, headers, patient_id: str) -> int:
    found = client.get(f"/fhir/DocumentReference?patient={patient_id}", headers=headers)
    assert found.status_code == 200, found.text
    return len(found.json().get("entry") or [])


@pytest.mark.parametrize("label", LABELS)
def test_a_caregivers_upload_with_a_visibility_label_is_refused_and_stores_nothing(
    client, tokens, label
):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    assert grant(client, own, patient_id, "aidant-3", scope="read-upload").status_code == 201
    caregiver = tokens.caregiver("aidant-3")

    refused = _upload(client, caregiver, patient_id, label)
    assert refused.status_code == 422, refused.text
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert label in outcome["issue"][0]["diagnostics"]
    assert outcome["issue"][0]["expression"] == ["DocumentReference.securityLabel"]
    assert _count(client, own, patient_id) == 0
    assert _upload(client, caregiver, patient_id).status_code == 201
    assert _count(client, own, patient_id) == 1


def test_the_patient_masks_their_upload_but_never_hides_it_from_themselves(client, tokens):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    refused = _upload(client, own, patient_id, "INVISIBLE_PATIENT")
    assert refused.status_code == 422, refused.text
    assert "INVISIBLE_PATIENT" in refused.json()["issue"][0]["diagnostics"]
    assert _upload(client, own, patient_id, "MASQUE_PS").status_code == 201
    assert _upload(client, own, patient_id, "INVISIBLE_REPRESENTANTS_LEGAUX").status_code == 201
    assert _count(client, own, patient_id) == 2


def test_a_representative_may_mask_an_upload_and_set_nothing_else(client, tokens):
    child_id, child_ins = create_patient_born(client, tokens, 31, years_ago(8))
    parent_ins = ins(32)
    operator = Tokens._headers(tokens.issuer.mint("operator", "ops-1", scope="system/Consent.u"))
    registered = client.post(
        policy_url(child_id, "/representatives"),
        json={"representative": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": parent_ins}},
        headers=operator,
    )
    assert registered.status_code == 201, registered.text
    parent = tokens.patient(parent_ins)
    for label in ("INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"):
        assert _upload(client, parent, child_id, label).status_code == 422
    assert _upload(client, parent, child_id, "MASQUE_PS").status_code == 201
    assert _count(client, tokens.patient(child_ins), child_id) == 1


def test_a_professional_author_sets_any_visibility_label(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    author = tokens.professional(OTHER_DOCTOR)
    for label in LABELS:
        assert _upload(client, author, patient_id, label).status_code == 201
