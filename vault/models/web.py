from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.models.base import Base, utcnow


class WebSession(Base):
    """A signed-in browser's session in the patient's space (vault/web/sessions.py).

    The browser holds ``<id>.<key>``; the row is found by a hash of the id and its data
    (who signed in, their ID token, the CSRF token) is sealed under the key, which the
    vault never stores: a copy of the database opens no session and reads no identifier."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_expires_at", "expires_at"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The absolute end, whatever the activity; idleness is judged from last_seen_at.
    expires_at: Mapped[datetime]
    data: Mapped[bytes] = mapped_column(LargeBinary)


class WebVisitor(Base):
    """When a person last came, to mark what is new since; keyed by a blind index of the
    identity that signed in (issuer and subject), never by the identifier itself."""

    __tablename__ = "web_visitors"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The visit before the current one: what arrived since is "nouveau".
    previous_visit_at: Mapped[datetime | None] = mapped_column(default=None)
    last_visit_at: Mapped[datetime] = mapped_column(default=utcnow)
    notifications_seen_at: Mapped[datetime | None] = mapped_column(default=None)
