"""The notification outbox's SQL for the delivery workers (vault/audit/delivery.py): due
rows claimed with ``FOR UPDATE SKIP LOCKED``, then their outcomes, each kind in one
statement."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, func, select, update

from vault.db import Session
from vault.models import AuditNotification

_OUTBOX = cast(Table, AuditNotification.__table__)


@cache
def _claim(columns: tuple[str, ...], untried: bool) -> Select[Any]:
    claim = (
        select(*(_OUTBOX.c[name] for name in columns))
        .where(_OUTBOX.c.status == "pending", _OUTBOX.c.next_attempt_at <= bindparam("now"))
        .order_by(_OUTBOX.c.next_attempt_at, _OUTBOX.c.id)
        .limit(bindparam("batch"))
        .with_for_update(skip_locked=True)
    )
    if untried:
        return claim.where(_OUTBOX.c.id.not_in(bindparam("tried", expanding=True)))
    return claim


_DELIVERED = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(
        status="delivered",
        attempts=_OUTBOX.c.attempts + 1,
        delivered_at=bindparam("now"),
        last_error=None,
    )
)
_HELD = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(next_attempt_at=bindparam("later"))
)
# One row each, in one executemany: a failure's attempts, error, status and next try.
_FAILED = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row_id"))
    .values(
        attempts=bindparam("row_attempts"),
        last_error=bindparam("row_error"),
        status=bindparam("row_status"),
        # A notification given up keeps the time it was last due.
        next_attempt_at=func.coalesce(
            bindparam("row_next", type_=_OUTBOX.c.next_attempt_at.type),
            _OUTBOX.c.next_attempt_at,
        ),
    )
)


def claim_due(
    session: Session, columns: tuple[str, ...], now: datetime, batch: int, tried: list[int]
) -> list[Any]:
    """Up to ``batch`` notifications due at ``now`` that no other worker holds, but the
    ``tried`` ones, oldest due first: their ``columns``."""
    claim = _claim(columns, bool(tried))
    return list(session.execute(claim, {"now": now, "batch": batch, "tried": tried}))


def mark_delivered(session: Session, ids: list[int], now: datetime) -> None:
    session.execute(_DELIVERED, {"ids": ids, "now": now})


def hold(session: Session, ids: list[int], later: datetime) -> None:
    session.execute(_HELD, {"ids": ids, "later": later})


def record_failures(session: Session, failed: list[dict[str, Any]]) -> None:
    """``row_id``, ``row_attempts``, ``row_error``, ``row_status``, ``row_next`` each."""
    session.execute(_FAILED, failed)
