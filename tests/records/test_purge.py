"""Deleting a closed space: at the end of the retention period, or early when its holder
asks (within the bound the settings set), by `vault records purge`, which crypto-shreds it
and leaves tombstones; idempotent, resumable, audited; the holder is told; a deleted space
cannot be reopened, and the next push for the person makes a new, empty one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from tests.access.policy_support import audit_entries, publish_document
from tests.factories import DOCTOR, create_patient, patient_resource
from tests.notifications.conftest import (
    ADDRESS,
    SENDER,
    confirmed_address,
    plain_settings,
)
from tests.notifications.smtp_server import SmtpServer
from vault.audit.delivery import DeliveryWorker, LogSender
from vault.cli import app as cli
from vault.models import (
    AuditNotification,
    Binary,
    Document,
    DocumentVersion,
    NotificationContact,
    Patient,
    PatientKey,
    RecordLifecycle,
)
from vault.models.base import as_utc, utcnow
from vault.notifications import templates
from vault.notifications.mail import SmtpMailer
from vault.notifications.outbox import EmailWorker, Links, enqueue_notifications
from vault.services.records import purger


def _count(services, model, *where) -> int:
    with services.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _lifecycle(services, patient_id) -> RecordLifecycle:
    with services.session_factory() as session:
        row = session.get(RecordLifecycle, patient_id)
        assert row is not None
        return row


def _stages(services, patient_id) -> list[tuple[str, str]]:
    return [
        (str(entry.detail.get("permission")), str(entry.detail.get("stage")))
        for entry in audit_entries(services, patient_id)
        if entry.outcome == "success"
        and str(entry.detail.get("permission", "")).startswith("record:")
    ]


def _mail(smtp, kind: str):
    """The one e-mail of this kind the test server received."""
    subject = templates.TEMPLATES[kind].subject
    found = [message for message in smtp.mailbox.messages() if message["Subject"] == subject]
    assert len(found) == 1, [message["Subject"] for message in smtp.mailbox.messages()]
    return found[0]


@pytest.fixture
def closed_record(client, tokens):
    def make(seed: int, *, delete_now: bool):
        patient_id, ins_value = create_patient(client, tokens, seed=seed)
        doctor = tokens.professional(DOCTOR)
        for _ in range(3):
            publish_document(client, doctor, patient_id)
        closed = client.post(
            "/api/patients/me/closure",
            json={"deleteNow": delete_now},
            headers=tokens.patient(ins_value),
        )
        assert closed.status_code == 201, closed.text
        return patient_id, ins_value, closed.json()

    return make


def test_early_deletion_is_done_by_the_purge_within_the_bound(
    client, tokens, services, closed_record
):
    patient_id, ins_value, body = closed_record(51, delete_now=True)
    asked = utcnow()
    assert body["deletionRequestedAt"] is not None
    due = as_utc(_lifecycle(services, patient_id).deletion_due_at)
    assert asked + timedelta(days=29) < due <= asked + timedelta(days=30)
    job = purger(services)

    assert job.run(now=utcnow()).shredded == 0
    stats = job.run(now=due + timedelta(seconds=1))

    assert (stats.shredded, stats.documents, stats.completed) == (1, 3, 1)
    # Tombstones: the rows stay, every key is gone.
    assert _count(services, Document, Document.patient_id == patient_id) == 3
    assert _count(services, Document, Document.deleted_at.is_(None)) == 0
    assert _count(services, Document, Document.type_code.is_not(None)) == 0
    assert _count(services, DocumentVersion, DocumentVersion.resource_dek.is_not(None)) == 0
    assert _count(services, Binary, Binary.wrapped_dek.is_not(None)) == 0
    assert _count(services, PatientKey, PatientKey.patient_id == patient_id) == 0
    with services.session_factory() as session:
        patient = session.get(Patient, patient_id)
        assert patient is not None
        assert patient.resource_ciphertext == b""
    row = _lifecycle(services, patient_id)
    assert row.status == "deleted"
    assert row.deleted_at is not None
    # Audited, and the holder is told.
    stages = _stages(services, patient_id)
    assert ("record:delete", "requested") in stages
    assert ("record:delete", "deleted") in stages
    with services.session_factory() as session:
        told = session.scalars(
            select(AuditNotification.kind).where(AuditNotification.patient_id == patient_id)
        ).all()
    assert "space-deleted" in told
    # Idempotent: nothing more to do.
    again = job.run(now=due + timedelta(days=1))
    assert (again.shredded, again.completed) == (0, 0)
    # Deleted: not reopened, found by nobody; the person's next push makes a new space.
    own = tokens.patient(ins_value)
    assert client.post("/api/patients/me/reopening", headers=own).status_code == 404
    assert client.post(f"/api/patients/{patient_id}/reopening", headers=own).status_code == 404
    assert client.get(f"/api/patients/{patient_id}/closure", headers=own).status_code == 404
    fresh = client.post(
        "/fhir/Patient", json=patient_resource(ins_value), headers=tokens.professional(DOCTOR)
    )
    assert fresh.status_code == 201, fresh.text
    assert patient_id not in fresh.headers["Location"]
    page = client.get("/fhir/DocumentReference", headers=own)
    assert page.status_code == 200
    assert not page.json().get("entry")


def test_a_closed_space_is_kept_for_the_retention_period_then_deleted(
    client, tokens, services, closed_record
):
    patient_id, _ins, body = closed_record(52, delete_now=False)
    assert body["deletionRequestedAt"] is None
    job = purger(services)
    until = as_utc(_lifecycle(services, patient_id).retention_until)
    assert until > utcnow() + timedelta(days=3649)

    assert job.run(now=until - timedelta(days=1)).shredded == 0
    assert _count(services, PatientKey, PatientKey.patient_id == patient_id) >= 1
    assert job.run(now=until + timedelta(seconds=1)).shredded == 1
    assert _lifecycle(services, patient_id).status == "deleted"
    assert ("record:delete", "deleted") in _stages(services, patient_id)


def test_deletion_may_be_asked_later_while_the_space_is_kept(
    client, tokens, services, closed_record
):
    patient_id, ins_value, _body = closed_record(53, delete_now=False)
    own = tokens.patient(ins_value)
    other_id, other_ins = create_patient(client, tokens, seed=54)

    asked = client.post("/api/patients/me/closure/deletion", headers=own)
    again = client.post(f"/api/patients/{patient_id}/closure/deletion", headers=own)

    assert asked.status_code == 202, asked.text
    assert again.json()["deletionDueAt"] == asked.json()["deletionDueAt"]
    due = as_utc(_lifecycle(services, patient_id).deletion_due_at)
    assert due <= utcnow() + timedelta(days=30)
    # Someone else's space, or an open one: no.
    assert (
        client.post(
            f"/api/patients/{patient_id}/closure/deletion", headers=tokens.patient(other_ins)
        ).status_code
        == 404
    )
    open_one = client.post(
        f"/api/patients/{other_id}/closure/deletion", headers=tokens.patient(other_ins)
    )
    assert open_one.status_code == 409
    assert purger(services).run(now=due + timedelta(seconds=1)).shredded == 1


def test_the_holder_is_told_by_e_mail_and_the_address_outlives_the_keys_only_until_then(
    client, tokens, services
):
    patient_id, ins_value = create_patient(client, tokens, seed=55)
    own = tokens.patient(ins_value)
    publish_document(client, tokens.professional(DOCTOR), patient_id)
    outbox = DeliveryWorker(services.session_factory, LogSender(), fan_out=enqueue_notifications)
    with SmtpServer() as smtp:
        emails = EmailWorker(
            services.session_factory,
            services.notifications.contacts,
            SmtpMailer(plain_settings(smtp)),
            Links("http://testserver"),
            sender=SENDER,
        )
        confirmed_address(client, own, patient_id, emails, smtp)
        assert (
            client.post(
                "/api/patients/me/closure", json={"deleteNow": True}, headers=own
            ).status_code
            == 201
        )
        outbox.run_once()
        emails.run_once()
        assert _mail(smtp, "space-closed")["To"] == ADDRESS
        job = purger(services)
        due = as_utc(_lifecycle(services, patient_id).deletion_due_at) + timedelta(seconds=1)

        assert job.run(now=due).shredded == 1

        # Only the address is left readable, under a key of its own, until the notice leaves.
        keys = _count(services, PatientKey, PatientKey.patient_id == patient_id)
        assert keys == 1
        assert _lifecycle(services, patient_id).deleted_at is None
        with services.session_factory() as session:
            contact = session.get(NotificationContact, patient_id)
            assert contact is not None
            assert services.notifications.contacts.address(session, contact) == ADDRESS
        assert job.run(now=due).completed == 0
        outbox.run_once()
        emails.run_once()
        # The e-mail left after the purge, composed with the address the fresh key kept,
        # in the catalog's words, with nothing of the record in it.
        deleted_mail = _mail(smtp, "space-deleted")
        assert deleted_mail["To"] == ADDRESS
        assert b"compte rendu" not in deleted_mail.as_bytes()
        assert job.run(now=due).completed == 1
    assert _count(services, PatientKey, PatientKey.patient_id == patient_id) == 0
    assert _count(services, NotificationContact, NotificationContact.patient_id == patient_id) == 0
    assert _lifecycle(services, patient_id).deleted_at is not None
    assert ("record:delete", "completed") in _stages(services, patient_id)


def test_the_notice_does_not_keep_the_address_past_its_bound(client, tokens, services):
    patient_id, ins_value = create_patient(client, tokens, seed=56)
    own = tokens.patient(ins_value)
    with SmtpServer() as smtp:
        emails = EmailWorker(
            services.session_factory,
            services.notifications.contacts,
            SmtpMailer(plain_settings(smtp)),
            Links("http://testserver"),
            sender=SENDER,
        )
        confirmed_address(client, own, patient_id, emails, smtp)
    assert (
        client.post("/api/patients/me/closure", json={"deleteNow": True}, headers=own).status_code
        == 201
    )
    job = purger(services)
    due = as_utc(_lifecycle(services, patient_id).deletion_due_at) + timedelta(seconds=1)
    assert job.run(now=due).shredded == 1
    # Nobody delivers the notice: the key goes anyway once the bound is past.
    hours = services.settings.deletion_notice_hours
    assert job.run(now=due + timedelta(hours=hours) - timedelta(minutes=1)).completed == 0
    assert job.run(now=due + timedelta(hours=hours, minutes=1)).completed == 1
    assert _count(services, PatientKey, PatientKey.patient_id == patient_id) == 0


def test_vault_records_purge_runs_from_the_command_line(
    client, tokens, services, settings, closed_record, monkeypatch
):
    patient_id, _ins, _body = closed_record(57, delete_now=True)
    with services.session_factory() as session, session.begin():
        session.execute(
            update(RecordLifecycle)
            .where(RecordLifecycle.patient_id == patient_id)
            .values(deletion_due_at=utcnow() - timedelta(minutes=1))
        )
    for name, value in {
        "VAULT_DATABASE_URL": settings.database_url,
        "VAULT_DATA_DIR": str(settings.data_dir),
        "VAULT_BASE_URL": settings.base_url,
    }.items():
        monkeypatch.setenv(name, value)
    from vault.settings import get_settings  # noqa: PLC0415

    get_settings.cache_clear()
    try:
        dry = CliRunner().invoke(cli, ["records", "purge", "--dry-run"])
        result = CliRunner().invoke(cli, ["records", "purge"])
        again = CliRunner().invoke(cli, ["records", "purge"])
        # The log is append-only and chained: what the purge recorded keeps it intact.
        verified = CliRunner().invoke(cli, ["audit", "verify", "--patient", patient_id])
    finally:
        get_settings.cache_clear()

    assert dry.exit_code == 0, dry.output
    assert "1 records due" in dry.output
    assert result.exit_code == 0, result.output
    assert "shredded 1 records (3 documents), completed 1" in result.output
    assert "purging records" in result.output
    assert "shredded 0 records (0 documents), completed 0" in again.output
    assert verified.exit_code == 0, verified.output
    assert _lifecycle(services, patient_id).status == "deleted"


def test_the_purge_walks_every_batch_and_resumes_where_it_stopped(
    client, tokens, services, monkeypatch
):
    from vault.records import purge, repository  # noqa: PLC0415

    records = []
    for seed in range(90, 95):
        patient_id, ins_value = create_patient(client, tokens, seed=seed)
        closed = client.post(
            "/api/patients/me/closure", json={"deleteNow": True}, headers=tokens.patient(ins_value)
        )
        assert closed.status_code == 201
        records.append(patient_id)
    monkeypatch.setattr(purge, "BATCH", 2)
    later = utcnow() + timedelta(days=31)
    destroy = repository.destroy_keys
    calls = []

    def failing(session, patient_id, keep=None):
        calls.append(patient_id)
        if len(calls) == 3:
            raise RuntimeError("the machine went down")
        return destroy(session, patient_id, keep)

    monkeypatch.setattr(repository, "destroy_keys", failing)
    with pytest.raises(RuntimeError):
        purger(services).run(now=later)
    # Two records purged whole; the third rolled back whole; the rest untouched.
    statuses = {patient_id: _lifecycle(services, patient_id).status for patient_id in records}
    assert sorted(statuses.values()) == ["closed", "closed", "closed", "deleted", "deleted"]
    for patient_id, status in statuses.items():
        keys = _count(services, PatientKey, PatientKey.patient_id == patient_id)
        assert (keys == 0) == (status == "deleted")

    monkeypatch.setattr(repository, "destroy_keys", destroy)
    resumed = purger(services).run(now=later)

    assert (resumed.shredded, resumed.completed) == (3, 3)
    assert {_lifecycle(services, patient_id).status for patient_id in records} == {"deleted"}
    assert purger(services).run(now=later).shredded == 0
