"""The export jobs' SQL: counting a record's exports, listing a requester's, the worker's
claim, progress, outcome and expiry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import Session

from vault.models import RecordExport


def count_in(session: Session, patient_id: str, statuses: Sequence[str]) -> int | None:
    """The record's exports in one of ``statuses``."""
    return session.scalar(
        select(func.count())
        .select_from(RecordExport)
        .where(RecordExport.patient_id == patient_id, RecordExport.status.in_(statuses))
    )


def count_since(session: Session, patient_id: str, since: datetime) -> int | None:
    """The record's exports asked for after ``since``."""
    return session.scalar(
        select(func.count())
        .select_from(RecordExport)
        .where(RecordExport.patient_id == patient_id, RecordExport.requested_at > since)
    )


def latest_of(
    session: Session, patient_id: str, requester_kind: str, requester_id: str, limit: int
) -> list[RecordExport]:
    """One requester's latest exports of the record, newest first."""
    return list(
        session.scalars(
            select(RecordExport)
            .where(
                RecordExport.patient_id == patient_id,
                RecordExport.requester_kind == requester_kind,
                RecordExport.requester_id == requester_id,
            )
            .order_by(RecordExport.requested_at.desc(), RecordExport.id)
            .limit(limit)
        )
    )


def next_to_build(session: Session, now: datetime) -> RecordExport | None:
    """The oldest job queued, or building under a lease run out, locked (skipping those
    another worker holds)."""
    return session.scalars(
        select(RecordExport)
        .where(
            (RecordExport.status == "queued")
            | ((RecordExport.status == "building") & (RecordExport.lease_until <= now))
        )
        .order_by(RecordExport.requested_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()


def set_fields(session: Session, patient_id: str, export_id: str, **values: Any) -> None:
    session.execute(
        update(RecordExport)
        .where(RecordExport.patient_id == patient_id, RecordExport.id == export_id)
        .values(**values)
    )


def expire_ready(session: Session, now: datetime) -> list[tuple[str, str]]:
    """Mark the ready archives past ``now`` expired and forget their keys; their
    (patient id, export id)."""
    keys = [
        (str(patient_id), str(export_id))
        for patient_id, export_id in session.execute(
            select(RecordExport.patient_id, RecordExport.id).where(
                RecordExport.status == "ready", RecordExport.expires_at <= now
            )
        )
    ]
    if keys:
        session.execute(
            update(RecordExport)
            .where(tuple_(RecordExport.patient_id, RecordExport.id).in_(keys))
            .values(status="expired", wrapped_dek=None, kek_id=None)
        )
    return keys
