"""The queries that read audit entries back: a patient's history and the SIEM export."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from vault.models import AuditEntry, Document, Patient


def patient_exists(session: Session, patient_id: str) -> bool:
    """By its id alone: the answer, not the (encrypted) record, and the same small query
    whether or not there is one to load (docs/threat-model.md, timing)."""
    return session.scalar(select(Patient.id).where(Patient.id == patient_id)) is not None


def patient_entries(
    session: Session,
    patient_id: str,
    before: int | None,
    limit: int,
    *,
    roles: tuple[str, ...] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AuditEntry]:
    """Newest first, keyset-paged on the entry id (ix_audit_entries_patient_time);
    optionally only some actors' roles, and a period."""
    query = (
        select(AuditEntry)
        .where(AuditEntry.patient_id == patient_id)
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(AuditEntry.id < before)
    if roles:
        query = query.where(AuditEntry.actor_role.in_(roles))
    if since is not None:
        query = query.where(AuditEntry.occurred_at >= since)
    if until is not None:
        query = query.where(AuditEntry.occurred_at < until)
    return list(session.scalars(query))


def documents_by_id(session: Session, keys: set[tuple[str, str]]) -> dict[str, Document]:
    """Documents by id, each named with its patient: ``(patient_id, document_id)``."""
    if not keys:
        return {}
    return {
        d.id: d
        for d in session.scalars(
            select(Document).where(tuple_(Document.patient_id, Document.id).in_(keys))
        )
    }


def entries_since(
    session: Session, since: datetime | None, after_id: int | None, batch: int = 1000
) -> Iterator[AuditEntry]:
    """In id order, streamed: the export must not hold the log in memory."""
    query = select(AuditEntry).order_by(AuditEntry.id)
    if since is not None:
        query = query.where(AuditEntry.occurred_at >= since)
    if after_id is not None:
        query = query.where(AuditEntry.id > after_id)
    for entry in session.scalars(query.execution_options(yield_per=batch)):
        yield entry
        session.expunge(entry)


def entries_by_id(session: Session, ids: list[int]) -> list[AuditEntry]:
    if not ids:
        return []
    return list(session.scalars(select(AuditEntry).where(AuditEntry.id.in_(ids))))
