"""The only place that builds SQL for records' lifetimes and oppositions."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from vault.models import (
    AccessPolicyEntry,
    AuditNotification,
    Binary,
    CaregiverInvitation,
    Document,
    DocumentVersion,
    NotificationContact,
    NotificationEmail,
    Patient,
    PatientKey,
    RecordExport,
    RecordLifecycle,
    SubmissionSet,
)

OPEN, CLOSED, DELETED = "open", "closed", "deleted"


def lock_patient(session: Session, patient_id: str) -> Patient | None:
    """The record's row, locked: closing, deleting, reopening and purging one record queue
    behind each other."""
    return session.scalar(select(Patient).where(Patient.id == patient_id).with_for_update())


def lifecycle(session: Session, patient_id: str) -> RecordLifecycle | None:
    return session.get(RecordLifecycle, patient_id)


def end_delegations(session: Session, patient_id: str, version: int, now: datetime) -> int:
    """Delegations in force end, and invitations not yet taken up can no longer be."""
    ended = session.execute(
        update(AccessPolicyEntry)
        .where(
            AccessPolicyEntry.patient_id == patient_id,
            AccessPolicyEntry.kind == "delegation",
            AccessPolicyEntry.ended_at.is_(None),
        )
        .values(
            ended_at=now, version_ended=version, ended_by_role="vault", ended_by="record-closed"
        )
    )
    session.execute(
        update(CaregiverInvitation)
        .where(
            CaregiverInvitation.patient_id == patient_id,
            CaregiverInvitation.accepted_at.is_(None),
            CaregiverInvitation.code_expires_at > now,
        )
        .values(code_expires_at=now)
    )
    return int(getattr(ended, "rowcount", 0) or 0)


def end_every_entry(session: Session, patient_id: str, version: int, now: datetime) -> None:
    session.execute(
        update(AccessPolicyEntry)
        .where(AccessPolicyEntry.patient_id == patient_id, AccessPolicyEntry.ended_at.is_(None))
        .values(
            ended_at=now, version_ended=version, ended_by_role="vault", ended_by="record-deleted"
        )
    )


def stop_exports(session: Session, patient_id: str) -> list[str]:
    """Exports in progress fail and ready ones expire, their keys destroyed: nobody reads a
    closed record, through an archive either. Returns the ids whose files must go."""
    session.execute(
        update(RecordExport)
        .where(
            RecordExport.patient_id == patient_id,
            RecordExport.status.in_(("queued", "building")),
        )
        .values(status="failed", error="RecordClosed", lease_until=None)
    )
    ready = list(
        session.scalars(
            select(RecordExport.id).where(
                RecordExport.patient_id == patient_id, RecordExport.status == "ready"
            )
        )
    )
    if ready:
        session.execute(
            update(RecordExport)
            .where(RecordExport.id.in_(ready))
            .values(status="expired", wrapped_dek=None, kek_id=None)
        )
    return ready


# -- the purge ---------------------------------------------------------------------------


def due_for_shredding(session: Session, now: datetime, after: str, limit: int) -> Sequence[str]:
    """Closed records whose deletion is due, by id after ``after`` (a run walks them once)."""
    return session.scalars(
        select(RecordLifecycle.patient_id)
        .where(
            RecordLifecycle.status == CLOSED,
            RecordLifecycle.deletion_due_at <= now,
            RecordLifecycle.patient_id > after,
        )
        .order_by(RecordLifecycle.patient_id)
        .limit(limit)
    ).all()


def awaiting_completion(session: Session, after: str, limit: int) -> Sequence[str]:
    """Shredded records whose last key (kept for the notice) has yet to go."""
    return session.scalars(
        select(RecordLifecycle.patient_id)
        .where(
            RecordLifecycle.status == DELETED,
            RecordLifecycle.deleted_at.is_(None),
            RecordLifecycle.patient_id > after,
        )
        .order_by(RecordLifecycle.patient_id)
        .limit(limit)
    ).all()


def count_due(session: Session, now: datetime) -> int:
    shred = select(func.count()).where(
        RecordLifecycle.status == CLOSED, RecordLifecycle.deletion_due_at <= now
    )
    finish = select(func.count()).where(
        RecordLifecycle.status == DELETED, RecordLifecycle.deleted_at.is_(None)
    )
    return int(session.scalar(shred) or 0) + int(session.scalar(finish) or 0)


def claim(session: Session, patient_id: str, status: str) -> RecordLifecycle | None:
    """The lifecycle row, locked, if it still is in ``status`` (another purge may have
    taken it, or the patient reopened it, since it was listed)."""
    return session.scalar(
        select(RecordLifecycle)
        .where(RecordLifecycle.patient_id == patient_id, RecordLifecycle.status == status)
        .with_for_update(skip_locked=True)
    )


def shred_documents(session: Session, patient_id: str, at: datetime) -> int:
    """Every document of the record as ``documents.repository.shred`` leaves one deleted:
    every data key of every version and of the content destroyed, the tombstone kept (so
    that a restored backup replays it, vault/backup/shreds.py). Returns how many."""
    shredded = session.execute(
        update(Document)
        .where(Document.patient_id == patient_id, Document.deleted_at.is_(None))
        .values(
            deleted_at=at,
            status="entered-in-error",
            type_code=None,
            category_code=None,
            updated_at=at,
        )
    )
    session.execute(
        update(DocumentVersion)
        .where(DocumentVersion.patient_id == patient_id)
        .values(resource_dek=None, resource_ciphertext=None)
    )
    session.execute(
        update(Binary)
        .where(Binary.patient_id == patient_id, Binary.shredded_at.is_(None))
        .values(wrapped_dek=None, shredded_at=at)
    )
    # A SubmissionSet's List is sealed under the record's keys too: its data key goes.
    session.execute(
        update(SubmissionSet).where(SubmissionSet.patient_id == patient_id).values(resource_dek=b"")
    )
    return int(getattr(shredded, "rowcount", 0) or 0)


def forget_patient(session: Session, patient: Patient) -> None:
    """The record's row stays as its tombstone: its sealed resource goes, and its INS index
    is replaced by one no INS has, so that the person may be given a new, empty space."""
    patient.ins_index = hashlib.sha256(b"deleted\x00" + patient.id.encode()).digest()
    patient.resource_ciphertext = b""
    patient.resource_dek = b""


def destroy_keys(session: Session, patient_id: str, keep: str | None = None) -> int:
    """Crypto-shredding: the record's key-encryption keys are deleted, so no data key they
    wrapped can be unwrapped again, with any key the vault still holds."""
    query = delete(PatientKey).where(PatientKey.patient_id == patient_id)
    if keep is not None:
        query = query.where(PatientKey.id != keep)
    return int(getattr(session.execute(query), "rowcount", 0) or 0)


def contact(session: Session, patient_id: str) -> NotificationContact | None:
    return session.get(NotificationContact, patient_id)


def drop_contact(session: Session, patient_id: str) -> None:
    session.execute(
        update(NotificationEmail)
        .where(NotificationEmail.patient_id == patient_id)
        .values(secret_ciphertext=None, secret_dek=None)
    )
    session.execute(delete(NotificationContact).where(NotificationContact.patient_id == patient_id))


def notice_pending(session: Session, patient_id: str) -> bool:
    """Whether a notification about the record is still on its way to the patient."""
    outbox = select(func.count()).where(
        AuditNotification.patient_id == patient_id, AuditNotification.status == "pending"
    )
    emails = select(func.count()).where(
        NotificationEmail.patient_id == patient_id,
        NotificationEmail.status.in_(("pending", "sending")),
    )
    return bool(session.scalar(outbox)) or bool(session.scalar(emails))
