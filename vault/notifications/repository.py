"""The only place that builds SQL for notifications: the patient's notification outbox as
their space lists it, their e-mail preferences, and the e-mail outbox."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Row, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vault.models import AuditNotification, NotificationContact, NotificationEmail

_EMAILS = cast(Table, NotificationEmail.__table__)
DUE = ("pending", "sending")


# -- the patient's notifications, as their space lists them ---------------------------


def latest_notifications(
    session: Session, patient_id: str, limit: int
) -> Sequence[AuditNotification]:
    """Newest first."""
    return session.scalars(
        select(AuditNotification)
        .where(AuditNotification.patient_id == patient_id)
        .order_by(AuditNotification.id.desc())
        .limit(limit)
    ).all()


def notification_ids_after(
    session: Session, patient_id: str, seen: datetime | None, limit: int
) -> Sequence[int]:
    """The ids of at most ``limit`` notifications created after ``seen`` (all when None)."""
    query = select(AuditNotification.id).where(AuditNotification.patient_id == patient_id)
    if seen is not None:
        query = query.where(AuditNotification.created_at > seen)
    return session.scalars(query.limit(limit)).all()


# -- e-mail preferences ---------------------------------------------------------------


def emails_of_kind_since(session: Session, patient_id: str, kind: str, since: datetime) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(NotificationEmail)
            .where(
                NotificationEmail.patient_id == patient_id,
                NotificationEmail.kind == kind,
                NotificationEmail.created_at > since,
            )
        )
        or 0
    )


def contact_by_confirm_token(session: Session, token_hash: bytes) -> NotificationContact | None:
    return session.scalars(
        select(NotificationContact).where(NotificationContact.confirm_token_hash == token_hash)
    ).one_or_none()


def contacts_wishes(
    session: Session, patient_ids: Iterable[str]
) -> Sequence[Row[str, str, datetime | None]]:
    """Each patient's wanted events and when their address was confirmed."""
    return session.execute(
        select(
            NotificationContact.patient_id,
            NotificationContact.events,
            NotificationContact.confirmed_at,
        ).where(NotificationContact.patient_id.in_(list(patient_ids)))
    ).all()


# -- the e-mail outbox ----------------------------------------------------------------


def queue_emails(session: Session, rows: list[dict[str, Any]]) -> None:
    """Each row skipped when an e-mail for its notification is already queued."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(_EMAILS).on_conflict_do_nothing(index_elements=["notification_id"]), rows
    )


def due_emails(session: Session, now: datetime, batch: int) -> Sequence[Row[Any]]:
    """Rows due (or whose worker's lease ran out), locked for this transaction; rows
    another worker holds are skipped."""
    return session.execute(
        select(_EMAILS)
        .where(_EMAILS.c.status.in_(DUE), _EMAILS.c.next_attempt_at <= now)
        .order_by(_EMAILS.c.next_attempt_at, _EMAILS.c.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()


def lease_email(session: Session, email_id: int, message_id: str, until: datetime) -> None:
    session.execute(
        update(_EMAILS)
        .where(_EMAILS.c.id == email_id)
        .values(
            status="sending",
            message_id=message_id,
            lease_until=until,
            next_attempt_at=until,
        )
    )


def record_attempt(session: Session, email_id: int, message_id: str, **values: Any) -> None:
    """The outcome of a sending attempt, on the row as this worker claimed it (same
    Message-ID)."""
    session.execute(
        update(_EMAILS)
        .where(_EMAILS.c.id == email_id, _EMAILS.c.message_id == message_id)
        .values(**values)
    )


def dead_emails(session: Session, limit: int) -> Sequence[Row[*tuple[Any, ...]]]:
    """id, kind, patient_id, attempts, last_error, created_at and when it failed."""
    return session.execute(
        select(
            _EMAILS.c.id,
            _EMAILS.c.kind,
            _EMAILS.c.patient_id,
            _EMAILS.c.attempts,
            _EMAILS.c.last_error,
            _EMAILS.c.created_at,
            _EMAILS.c.next_attempt_at,
        )
        .where(_EMAILS.c.status == "dead")
        .order_by(_EMAILS.c.id)
        .limit(limit)
    ).all()


def requeue_dead(session: Session, email_id: int, now: datetime) -> int:
    """Puts a dead letter back in the queue; how many rows that was (0 or 1)."""
    result = session.execute(
        update(_EMAILS)
        .where(_EMAILS.c.id == email_id, _EMAILS.c.status == "dead")
        .values(status="pending", attempts=0, next_attempt_at=now, last_error=None)
    )
    return cast(CursorResult[Any], result).rowcount
