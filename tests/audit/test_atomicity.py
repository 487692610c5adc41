"""The audit entry and the access are one transaction: no entry, no access. And the log
outlives the documents it mentions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select, text

from tests.audit.conftest import activity
from tests.factories import create_patient, document_reference, publish
from vault.models import AuditEntry, Binary, Document, DocumentVersion, StoredBlobChunk


@contextmanager
def audit_writes_fail(services) -> Iterator[None]:
    """Every new audit entry is refused by the database, as a full disk or a revoked
    privilege would refuse it."""
    with services.engine.begin() as db:
        db.execute(
            text(
                "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'audit storage unavailable'; END $$"
            )
        )
        db.execute(
            text(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_entries "
                "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
            )
        )
    try:
        yield
    finally:
        with services.engine.begin() as db:
            db.execute(text("DROP TRIGGER refuse_audit ON audit_entries"))
            db.execute(text("DROP FUNCTION refuse_audit()"))


def _count(services, model) -> int:
    with services.session_factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_document_is_not_stored_when_its_audit_entry_cannot_be_written(client, tokens, services):
    patient_id, _ = create_patient(client, tokens, 1)
    entries = _count(services, AuditEntry)

    with audit_writes_fail(services):
        response = client.post(
            "/fhir/DocumentReference",
            json=document_reference(
                {"reference": f"Patient/{patient_id}"}, b"%PDF-1.7 never stored"
            ),
            headers=tokens.professional(),
        )

    assert response.status_code >= 500
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "never stored" not in response.text
    for model in (Document, DocumentVersion, Binary, StoredBlobChunk):
        assert _count(services, model) == 0, model.__name__
    assert _count(services, AuditEntry) == entries


def test_a_read_returns_nothing_when_its_audit_entry_cannot_be_written(client, tokens, services):
    patient_id, ins_value = create_patient(client, tokens, 1)
    stored = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 secret result")
    binary = stored["content"][0]["attachment"]["url"]

    with audit_writes_fail(services):
        metadata = client.get(
            f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value)
        )
        content = client.get(f"/fhir/{binary}", headers=tokens.patient(ins_value))

    for response in (metadata, content):
        assert response.status_code >= 500
        assert b"secret result" not in response.content
        assert stored["id"] not in response.text


def test_audit_entries_outlive_a_crypto_shredded_document(client, tokens, services):
    patient_id, ins_value = activity(client, tokens, 1)
    stored = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 to withdraw")
    assert (
        client.get(
            f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value)
        ).status_code
        == 200
    )

    deleted = client.delete(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional()
    )
    assert deleted.status_code == 204
    services.audit_log.checkpoints.make(services.session_factory)

    with services.session_factory() as session:
        about = session.scalars(
            select(AuditEntry.action).where(AuditEntry.resource_id == stored["id"])
        ).all()
    assert {"R", "D"} <= set(about)
    report = services.audit_log.verifier.verify(services.session_factory)
    assert report.ok, report.first_failure
    history = client.get(
        f"/fhir/AuditEvent?patient={patient_id}&_count=200", headers=tokens.patient(ins_value)
    ).json()
    actions = {
        entry["resource"]["action"]
        for entry in history["entry"]
        for entity in entry["resource"]["entity"]
        if entity.get("what", {}).get("reference") == f"DocumentReference/{stored['id']}"
    }
    assert {"R", "D"} <= actions
