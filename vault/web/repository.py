"""The only place that builds SQL for the space's server-side sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vault.models import WebSession


def delete_session(session: Session, id_hash: str) -> None:
    session.execute(delete(WebSession).where(WebSession.id_hash == id_hash))


def session_exists(session: Session, id_hash: str) -> bool:
    found = session.scalar(select(WebSession.id_hash).where(WebSession.id_hash == id_hash))
    return found is not None


def delete_sessions_ended(session: Session, expired_by: datetime, idle_since: datetime) -> int:
    """Deletes the sessions past their absolute end or idle since before ``idle_since``;
    returns how many."""
    result = session.execute(
        delete(WebSession).where(
            (WebSession.expires_at <= expired_by) | (WebSession.last_seen_at <= idle_since)
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
