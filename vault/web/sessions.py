"""Server-side sessions for the patient's space.

The browser holds one cookie, ``__Host-vault-session`` = ``<id>.<key>``: the vault keeps a
row found by a hash of the id, whose data is sealed (AES-256-GCM) under the key. The key is
never stored, so the sessions table opens no session and reveals no identifier. Tokens and
who signed in stay on the server; the browser never sees them.

A plain ASGI middleware (as vault/api/middleware.py) exposes the data as
``scope["session"]`` -- where authlib's Starlette client keeps its ``state``, ``nonce`` and
PKCE verifier between /login and the callback -- and writes it back before the response
starts. ``rotate`` gives the session a new id (at sign-in, against fixation); ``end``
deletes it on the server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import anyio
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vault.db import SessionFactory
from vault.errors import IntegrityError
from vault.models import WebSession
from vault.models.base import utcnow
from vault.storage import crypto
from vault.web import repository

COOKIE = "__Host-vault-session"
# Over plain HTTP on a host that is not loopback, a browser refuses __Host- cookies (they
# must be Secure); that is a development setup the vault still serves, under this name.
PLAIN_COOKIE = "vault-session"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# last_seen_at is written at most this often: idleness is judged to the minute.
TOUCH_SECONDS = 60
# Ended sessions are deleted by the process that creates one, at most this often.
PURGE_SECONDS = 600
CSRF_KEY = "csrf"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _context(id_hash: str) -> bytes:
    return crypto.associated_data("WebSession", id_hash)


class SessionData(dict[str, Any]):
    """The session's data, with what the middleware must do once the response starts."""

    def __init__(self, values: dict[str, Any] | None = None, cookie: str | None = None) -> None:
        super().__init__(values or {})
        self.cookie = cookie
        self.modified = False
        self.rotated = False
        self.ended = False

    def __setitem__(self, key: str, value: Any) -> None:
        self.modified = True
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.modified = True
        super().__delitem__(key)

    def pop(self, key: str, default: Any = None) -> Any:
        if key in self:
            self.modified = True
        return super().pop(key, default)

    def clear(self) -> None:
        self.modified = True
        super().clear()

    def rotate(self, values: dict[str, Any]) -> None:
        """Replace everything under a new session id: the old id no longer opens anything."""
        super().clear()
        super().update(values)
        self.modified = True
        self.rotated = True

    def end(self) -> None:
        super().clear()
        self.ended = True


class SessionStore:
    """Web sessions, kept in the database (their SQL is in vault/web/repository.py)."""

    def __init__(
        self,
        factory: SessionFactory,
        *,
        idle: timedelta,
        absolute: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.factory = factory
        self.idle = idle
        self.absolute = absolute
        self.clock = clock
        self._purged_at: datetime | None = None

    @staticmethod
    def _split(cookie: str) -> tuple[str, bytes] | None:
        session_id, dot, key = cookie.partition(".")
        if not dot or len(session_id) != 43 or len(key) != 43:
            return None
        try:
            return session_id, _unb64(key)
        except ValueError:
            return None

    def load(self, cookie: str) -> dict[str, Any] | None:
        """The data of a live session, or None (unknown, tampered with, idle or too old)."""
        parts = self._split(cookie)
        if parts is None:
            return None
        session_id, key = parts
        id_hash = _id_hash(session_id)
        now = self.clock()
        with self.factory.begin() as session:
            row = session.get(WebSession, id_hash)
            if row is None:
                return None
            if row.expires_at <= now or row.last_seen_at + self.idle <= now:
                session.delete(row)
                return None
            try:
                data = json.loads(crypto.open_sealed(key, row.data, _context(id_hash)))
            except IntegrityError:
                return None
            if (now - row.last_seen_at).total_seconds() >= TOUCH_SECONDS:
                row.last_seen_at = now
        return data if isinstance(data, dict) else None

    def create(self, data: dict[str, Any]) -> str:
        session_id, key = _b64(secrets.token_bytes(32)), secrets.token_bytes(32)
        id_hash = _id_hash(session_id)
        now = self.clock()
        if self._purged_at is None or (now - self._purged_at).total_seconds() >= PURGE_SECONDS:
            # Sessions nobody ends (a closed tab) must not pile up: creating one sweeps.
            self._purged_at = now
            self.purge()
        with self.factory.begin() as session:
            session.add(
                WebSession(
                    id_hash=id_hash,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + self.absolute,
                    data=self._seal(key, id_hash, data),
                )
            )
        return f"{session_id}.{_b64(key)}"

    def save(self, cookie: str, data: dict[str, Any]) -> bool:
        """Write the data back; False when the session is gone meanwhile."""
        parts = self._split(cookie)
        if parts is None:
            return False
        session_id, key = parts
        id_hash = _id_hash(session_id)
        with self.factory.begin() as session:
            row = session.get(WebSession, id_hash)
            if row is None:
                return False
            row.data = self._seal(key, id_hash, data)
            row.last_seen_at = self.clock()
        return True

    def delete(self, cookie: str) -> None:
        parts = self._split(cookie)
        if parts is None:
            return
        with self.factory.begin() as session:
            repository.delete_session(session, _id_hash(parts[0]))

    def exists(self, cookie: str) -> bool:
        parts = self._split(cookie)
        if parts is None:
            return False
        with self.factory() as session:
            return repository.session_exists(session, _id_hash(parts[0]))

    def purge(self) -> int:
        """Delete the sessions past their absolute or idle end."""
        now = self.clock()
        with self.factory.begin() as session:
            return repository.delete_sessions_ended(session, now, now - self.idle)

    @staticmethod
    def _seal(key: bytes, id_hash: str, data: dict[str, Any]) -> bytes:
        plain = json.dumps(data, separators=(",", ":")).encode()
        return crypto.seal(key, plain, _context(id_hash))


def secure_request(scope: Scope, base_url: str) -> bool:
    """Whether the browser will keep a Secure cookie: served over TLS (directly, or as
    the base URL says behind a proxy), or on loopback, which browsers treat as secure."""
    if scope.get("scheme") == "https" or base_url.startswith("https://"):
        return True
    host = ""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = bytes(value).decode("latin-1")
            break
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return hostname in LOOPBACK


def cookie_name(secure: bool) -> str:
    return COOKIE if secure else PLAIN_COOKIE


def _cookie_of(scope: Scope, name: str) -> str | None:
    for header, value in scope.get("headers", ()):
        if header != b"cookie":
            continue
        for part in bytes(value).decode("latin-1").split(";"):
            key, _, found = part.strip().partition("=")
            if key == name and found:
                return found
    return None


class SessionMiddleware:
    """Loads the session for the space's paths, and saves, rotates or ends it."""

    def __init__(
        self, app: ASGIApp, store: SessionStore, base_url: str, paths: Callable[[str], bool]
    ) -> None:
        self.app = app
        self.store = store
        self.base_url = base_url
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.paths(scope["path"]):
            await self.app(scope, receive, send)
            return
        secure = secure_request(scope, self.base_url)
        name = cookie_name(secure)
        cookie = _cookie_of(scope, name)
        values = await anyio.to_thread.run_sync(self.store.load, cookie) if cookie else None
        data = SessionData(values, cookie if values is not None else None)
        scope["session"] = data
        # A cookie naming no live session is cleared, so the browser stops sending it.
        stale = cookie is not None and values is None

        async def send_with_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                header = await self._commit(data, stale)
                if header is not None:
                    MutableHeaders(scope=message).append("Set-Cookie", self._cookie(name, header))
            await send(message)

        await self.app(scope, receive, send_with_session)

    async def _commit(self, data: SessionData, stale: bool) -> str | None:
        """The new cookie value ("" to clear it), or None to leave the cookie alone."""
        if data.ended:
            if data.cookie is not None:
                await anyio.to_thread.run_sync(self.store.delete, data.cookie)
            return ""
        if data.rotated:
            if data.cookie is not None:
                await anyio.to_thread.run_sync(self.store.delete, data.cookie)
            return str(await anyio.to_thread.run_sync(self.store.create, dict(data)))
        if data.modified:
            if data.cookie is not None and await anyio.to_thread.run_sync(
                self.store.save, data.cookie, dict(data)
            ):
                return None
            return str(await anyio.to_thread.run_sync(self.store.create, dict(data)))
        return "" if stale else None

    def _cookie(self, name: str, value: str) -> str:
        attributes = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
        if name == COOKIE:
            attributes.append("Secure")
        if not value:
            attributes.append("Max-Age=0")
        return "; ".join(attributes)


def csrf_token(data: SessionData) -> str:
    token = data.get(CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        data[CSRF_KEY] = token
    return token


def csrf_valid(data: SessionData, sent: str | None) -> bool:
    expected = data.get(CSRF_KEY)
    return (
        isinstance(expected, str)
        and isinstance(sent, str)
        and secrets.compare_digest(expected.encode(), sent.encode())
    )
