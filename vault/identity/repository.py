"""The only place that builds SQL for registered clients and their used assertions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vault.models import OAuthClient, UsedClientAssertion


def all_clients(session: Session) -> Sequence[OAuthClient]:
    return session.scalars(select(OAuthClient).order_by(OAuthClient.client_id)).all()


def forget_expired_assertions(session: Session, now: datetime) -> None:
    """Assertions that could no longer be accepted anyway need not be remembered."""
    session.execute(delete(UsedClientAssertion).where(UsedClientAssertion.expires_at < now))
