"""Registered professional software (SMART Backend Services clients) and the client
assertions they have already used. Their SQL is in vault/identity/repository.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vault.db import IntegrityError, Session
from vault.errors import BadRequest, Conflict
from vault.identity import repository
from vault.identity.jwks import KeySource, RemoteJwks, StaticKeys, check_jwks_url, import_jwks
from vault.identity.scopes import Scope, format_scope, parse_scope
from vault.models import OAuthClient, UsedClientAssertion

# Client ids travel in HTTP Basic credentials and in JWT claims: keep them plain.
CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    name: str | None
    jwks: dict[str, Any] | None
    jwks_url: str | None
    secret_hash: str | None
    scopes: tuple[Scope, ...]
    on_behalf_of: str

    @property
    def has_keys(self) -> bool:
        return self.jwks is not None or self.jwks_url is not None

    def check_secret(self, secret: str) -> bool:
        return self.secret_hash is not None and verify_secret(self.secret_hash, secret)


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${encoded[0]}${encoded[1]}"


def verify_secret(stored: str, secret: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = hashlib.scrypt(
            secret.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
        )
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


def parse_registered_scopes(text: str) -> tuple[Scope, ...]:
    """Software acts as a system: only ``system/`` scopes can be registered for it."""
    scopes: list[Scope] = []
    for item in text.split():
        scope = parse_scope(item)
        if scope is None or scope.context != "system":
            raise BadRequest(f"{item!r} is not a SMART v2 system/ scope")
        scopes.append(scope)
    if not scopes:
        raise BadRequest("A client needs at least one scope")
    return tuple(scopes)


def _public_jwks(document: Any) -> dict[str, Any]:
    import_jwks(document)
    keys = document["keys"]
    # A pasted private key would put the client's signing secret in the vault's database.
    if any(isinstance(key, dict) and ("d" in key or "k" in key) for key in keys):
        raise BadRequest("Register the client's public keys only (its JWKS holds private parts)")
    return {"keys": list(keys)}


class ClientRegistry:
    def __init__(self, jwks_cache_seconds: float = 3600, jwks_min_refresh: float = 60) -> None:
        self._cache_seconds = jwks_cache_seconds
        self._min_refresh = jwks_min_refresh
        self._remote: dict[str, RemoteJwks] = {}
        self._lock = threading.Lock()

    def register(
        self,
        session: Session,
        client_id: str,
        *,
        on_behalf_of: str,
        scopes: str,
        jwks: dict[str, Any] | None = None,
        jwks_url: str | None = None,
        with_secret: bool = False,
        name: str | None = None,
    ) -> tuple[RegisteredClient, str | None]:
        """Register a client; returns it and, when asked for, its secret, shown only once."""
        if not CLIENT_ID.fullmatch(client_id):
            raise BadRequest("A client id is 1-128 letters, digits and . _ ~ -")
        if not on_behalf_of.strip():
            raise BadRequest("A client must act for a professional or an organisation")
        if jwks is not None and jwks_url is not None:
            raise BadRequest("Give the client's keys either as a JWKS or as a JWKS URL")
        if jwks is None and jwks_url is None and not with_secret:
            raise BadRequest("A client needs keys (JWKS or JWKS URL) or a secret")
        parsed = parse_registered_scopes(scopes)
        if session.get(OAuthClient, client_id) is not None:
            raise Conflict(f"Client {client_id} is already registered")
        secret = secrets.token_urlsafe(32) if with_secret else None
        row = OAuthClient(
            client_id=client_id,
            name=name,
            jwks=_public_jwks(jwks) if jwks is not None else None,
            jwks_url=check_jwks_url(jwks_url) if jwks_url is not None else None,
            secret_hash=hash_secret(secret) if secret is not None else None,
            scopes=" ".join(format_scope(scope) for scope in parsed),
            on_behalf_of=on_behalf_of.strip(),
        )
        session.add(row)
        session.flush()
        return _registered(row), secret

    def get(self, session: Session, client_id: str) -> RegisteredClient | None:
        if not CLIENT_ID.fullmatch(client_id):
            return None
        row = session.get(OAuthClient, client_id)
        return _registered(row) if row is not None else None

    def all(self, session: Session) -> list[RegisteredClient]:
        return [_registered(row) for row in repository.all_clients(session)]

    def remove(self, session: Session, client_id: str) -> bool:
        row = session.get(OAuthClient, client_id)
        if row is None:
            return False
        session.delete(row)
        session.flush()
        return True

    def keys(self, client: RegisteredClient) -> KeySource:
        if client.jwks is not None:
            return StaticKeys(import_jwks(client.jwks))
        if client.jwks_url is None:
            raise BadRequest("The client has no registered keys")
        with self._lock:
            remote = self._remote.get(client.jwks_url)
            if remote is None:
                remote = RemoteJwks(
                    client.jwks_url,
                    max_age=self._cache_seconds,
                    min_refresh_interval=self._min_refresh,
                )
                self._remote[client.jwks_url] = remote
            return remote

    @staticmethod
    def use_assertion(session: Session, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Record a client assertion's ``jti``; False when it was already used. Kept until the
        assertion could no longer be accepted anyway, then purged."""
        now = datetime.now(UTC)
        repository.forget_expired_assertions(session, now)
        try:
            with session.begin_nested():
                session.add(
                    UsedClientAssertion(client_id=client_id, jti=jti, expires_at=expires_at)
                )
        except IntegrityError:
            return False
        return True


def assertion_expiry(exp: float, clock_skew: int) -> datetime:
    return datetime.fromtimestamp(exp, UTC) + timedelta(seconds=clock_skew)


def _registered(row: OAuthClient) -> RegisteredClient:
    scopes = tuple(scope for scope in map(parse_scope, row.scopes.split()) if scope is not None)
    return RegisteredClient(
        client_id=row.client_id,
        name=row.name,
        jwks=dict(row.jwks) if row.jwks is not None else None,
        jwks_url=row.jwks_url,
        secret_hash=row.secret_hash,
        scopes=scopes,
        on_behalf_of=row.on_behalf_of,
    )
