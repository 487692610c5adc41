"""The signed checkpoints as stored: each log's, newest first.

The mapper names a checkpoint by its tree size alone (vault/models/audit.py), so that two
logs' checkpoints of one size never meet in a session's identity map, they are read as plain
rows and handed out as objects outside the session."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from vault.db import Session
from vault.models import AuditCheckpoint

_CHECKPOINTS = select(AuditCheckpoint.__table__)


def latest(session: Session, log: int) -> AuditCheckpoint | None:
    found = _detached(
        session,
        _CHECKPOINTS.where(AuditCheckpoint.log_id == log)
        .order_by(AuditCheckpoint.tree_size.desc())
        .limit(1),
    )
    return found[0] if found else None


def get(session: Session, tree_size: int, log: int) -> AuditCheckpoint | None:
    found = _detached(
        session,
        _CHECKPOINTS.where(AuditCheckpoint.log_id == log, AuditCheckpoint.tree_size == tree_size),
    )
    return found[0] if found else None


def page(session: Session, before: int | None, count: int, log: int) -> list[AuditCheckpoint]:
    query = (
        _CHECKPOINTS.where(AuditCheckpoint.log_id == log)
        .order_by(AuditCheckpoint.tree_size.desc())
        .limit(count)
    )
    if before is not None:
        query = query.where(AuditCheckpoint.tree_size < before)
    return _detached(session, query)


def _detached(session: Session, query: Select[Any]) -> list[AuditCheckpoint]:
    return [AuditCheckpoint(**row._mapping) for row in session.execute(query)]
