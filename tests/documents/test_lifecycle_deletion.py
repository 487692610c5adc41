"""Deletion: the author withdraws a document, a patient deletes what they uploaded; the keys
are destroyed (crypto-shredding) while the tombstone, the history rows and the audit remain."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.factories import OTHER_DOCTOR, create_patient, publish
from vault.models import AuditEntry, Binary, Document, DocumentVersion


def _binary_id(stored: dict) -> str:
    return stored["content"][0]["attachment"]["url"].rpartition("/")[2]


def test_the_author_withdraws_a_document_and_its_keys_are_destroyed(client, tokens, services):
    patient_id, _ = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 to withdraw")
    client.patch(
        f"/fhir/DocumentReference/{stored['id']}",
        json=[{"op": "add", "path": "/securityLabel", "value": [{"coding": [{"code": "N"}]}]}],
        headers={**tokens.professional(), "Content-Type": "application/json-patch+json"},
    )

    response = client.delete(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional()
    )

    assert response.status_code == 204
    with services.session_factory() as session:
        document = session.scalar(select(Document).where(Document.id == stored["id"]))
        assert document is not None
        assert document.deleted_at is not None
        versions = session.scalars(
            select(DocumentVersion).where(DocumentVersion.document_id == stored["id"])
        ).all()
        assert len(versions) == 2
        assert all(v.resource_dek is None and v.resource_ciphertext is None for v in versions)
        binary = session.scalar(select(Binary).where(Binary.id == _binary_id(stored)))
        assert binary is not None
        assert binary.wrapped_dek is None
        assert binary.shredded_at is not None
        entries = session.scalar(select(func.count()).where(AuditEntry.resource_id == stored["id"]))
        assert entries is not None
        assert entries >= 3  # create, update, delete


def test_a_deleted_document_answers_410_to_whoever_could_read_it(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)
    client.delete(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional())

    for headers in (tokens.professional(), tokens.patient(ins_value)):
        for path in (
            f"/fhir/DocumentReference/{stored['id']}",
            f"/fhir/DocumentReference/{stored['id']}/_history",
            f"/fhir/DocumentReference/{stored['id']}/_history/1",
            f"/fhir/Binary/{_binary_id(stored)}",
        ):
            response = client.get(path, headers=headers)
            assert response.status_code == 410, (path, response.text)
            assert response.json()["resourceType"] == "OperationOutcome"
            assert response.json()["issue"][0]["code"] == "deleted"


def test_a_deleted_document_answers_404_to_whoever_could_not_read_it(client, tokens):
    patient_id, _ = create_patient(client, tokens, seed=1)
    _, other_ins = create_patient(client, tokens, seed=2)
    stored = publish(client, tokens.professional(), patient_id)
    client.delete(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional())

    for headers in (tokens.professional(OTHER_DOCTOR), tokens.patient(other_ins)):
        seen = client.get(f"/fhir/DocumentReference/{stored['id']}", headers=headers)
        absent = client.get("/fhir/DocumentReference/no-such-id", headers=headers)
        assert seen.status_code == 404
        assert seen.json() == absent.json()
        binary = client.get(f"/fhir/Binary/{_binary_id(stored)}", headers=headers)
        assert binary.status_code == 404


def test_a_deleted_document_leaves_search_results(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    kept = publish(client, tokens.professional(), patient_id)
    gone = publish(client, tokens.professional(), patient_id)

    client.delete(f"/fhir/DocumentReference/{gone['id']}", headers=tokens.professional())

    found = client.get(
        f"/fhir/DocumentReference?patient={patient_id}", headers=tokens.patient(ins_value)
    )
    assert [entry["resource"]["id"] for entry in found.json()["entry"]] == [kept["id"]]


def test_deleting_twice_is_harmless(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)
    client.delete(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional())

    again = client.delete(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional())

    assert again.status_code == 204


def test_a_patient_deletes_a_document_they_uploaded(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    patient = tokens.patient(ins_value)
    stored = publish(client, patient, patient_id, b"my old results")
    assert stored["author"] == [{"reference": f"Patient/{patient_id}"}]

    response = client.delete(f"/fhir/DocumentReference/{stored['id']}", headers=patient)

    assert response.status_code == 204
    assert client.get(f"/fhir/DocumentReference/{stored['id']}", headers=patient).status_code == 410


def test_a_patient_cannot_delete_a_professionals_document(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    patient = tokens.patient(ins_value)
    stored = publish(client, tokens.professional(), patient_id)

    response = client.delete(f"/fhir/DocumentReference/{stored['id']}", headers=patient)

    assert response.status_code in (403, 404)
    read = client.get(f"/fhir/DocumentReference/{stored['id']}", headers=patient)
    assert read.status_code == 200
    assert client.get(f"/fhir/Binary/{_binary_id(stored)}", headers=patient).status_code == 200


def test_another_professional_cannot_delete_a_document(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)

    refused = client.delete(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional(OTHER_DOCTOR)
    )
    absent = client.delete(
        "/fhir/DocumentReference/no-such-id", headers=tokens.professional(OTHER_DOCTOR)
    )

    assert refused.status_code == 404
    assert refused.json() == absent.json()
    read = client.get(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value))
    assert read.status_code == 200


def test_another_patient_cannot_delete_a_document(client, tokens):
    patient_id, ins_value = create_patient(client, tokens, seed=1)
    _, other_ins = create_patient(client, tokens, seed=2)
    stored = publish(client, tokens.patient(ins_value), patient_id, b"mine")

    refused = client.delete(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(other_ins)
    )
    absent = client.delete("/fhir/DocumentReference/no-such-id", headers=tokens.patient(other_ins))

    assert refused.status_code == 404
    assert refused.json() == absent.json()
    read = client.get(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value))
    assert read.status_code == 200


def test_delete_with_a_stale_if_match_answers_412_and_keeps_the_document(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)
    client.patch(
        f"/fhir/DocumentReference/{stored['id']}",
        json=[{"op": "replace", "path": "/status", "value": "entered-in-error"}],
        headers={**tokens.professional(), "Content-Type": "application/json-patch+json"},
    )

    stale = client.delete(
        f"/fhir/DocumentReference/{stored['id']}",
        headers={**tokens.professional(), "If-Match": 'W/"1"'},
    )

    assert stale.status_code == 412
    read = client.get(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value))
    assert read.status_code == 200


def test_a_deleted_document_cannot_be_patched(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)
    client.delete(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional())

    response = client.patch(
        f"/fhir/DocumentReference/{stored['id']}",
        json=[{"op": "replace", "path": "/status", "value": "entered-in-error"}],
        headers={**tokens.professional(), "Content-Type": "application/json-patch+json"},
    )

    assert response.status_code == 410
