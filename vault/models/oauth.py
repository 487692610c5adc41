from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vault.models.base import Base, utcnow


class OAuthClient(Base):
    """Professional software registered for SMART Backend Services (``/oauth/token``).

    It authenticates with a signed client assertion checked against ``jwks`` or the keys
    published at ``jwks_url`` (private_key_jwt), or, for development, with a secret of which
    only a salted scrypt hash is kept (client_secret_basic).
    """

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    jwks: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    jwks_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    secret_hash: Mapped[str | None] = mapped_column(String(256), default=None)
    # Space-separated SMART v2 system/ scopes: the most a token for this client may carry.
    scopes: Mapped[str] = mapped_column(Text)
    # The IDNPS of the professional (or the organisation's identifier) it acts for.
    on_behalf_of: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsedClientAssertion(Base):
    """A client assertion's ``jti``, kept until the assertion expires so it cannot be
    replayed."""

    __tablename__ = "oauth_used_assertions"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    jti: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
