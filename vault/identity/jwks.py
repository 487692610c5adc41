"""Where verification keys come from: a fixed JWKS (inline or a file), or a JWKS URL that is
fetched once, cached, and fetched again only when a token names a key id the cache does
not hold -- and then at most once per refresh interval, so that tokens with made-up key ids
cannot make the vault hammer the provider."""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from vault.errors import ServiceUnavailable, VaultError

log = logging.getLogger("vault.access.jwks")

MAX_JWKS_BYTES = 256 * 1024


class KeySource(Protocol):
    def key_set(self, kid: str | None) -> KeySet:
        """The keys to verify a token whose header names ``kid``."""
        ...


def import_jwks(document: Any) -> KeySet:
    """A JWKS document's signing keys; encryption keys and unknown key types are left out."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise VaultError("A JWKS must be a JSON object with a list of keys")
    signing = [key for key in document["keys"] if isinstance(key, dict) and key.get("use") != "enc"]
    try:
        return KeySet.import_key_set({"keys": signing})
    except (JoseError, ValueError, TypeError, KeyError):
        raise VaultError("The JWKS holds no usable signing key") from None


class StaticKeys:
    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    def key_set(self, kid: str | None) -> KeySet:
        return self._keys


def check_jwks_url(url: str) -> str:
    """Keys must come over TLS; plain HTTP only from this machine (tests, sidecars)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        if parts.hostname == "localhost":
            return url
        try:
            if ipaddress.ip_address(parts.hostname).is_loopback:
                return url
        except ValueError:
            pass
    raise VaultError(f"JWKS URL must use https (plain http only on loopback): {url}")


class RemoteJwks:
    def __init__(
        self,
        url: str,
        *,
        max_age: float = 3600,
        min_refresh_interval: float = 60,
        timeout: float = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = check_jwks_url(url)
        self._max_age = max_age
        self._min_interval = min_refresh_interval
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None

    def key_set(self, kid: str | None) -> KeySet:
        with self._lock:
            now = self._clock()
            stale = self._keys is None or now - self._fetched_at >= self._max_age
            unknown = self._keys is not None and not _holds(self._keys, kid)
            may_fetch = self._attempted_at is None or now - self._attempted_at >= self._min_interval
            if (stale or unknown) and may_fetch:
                self._refresh(now)
            if self._keys is None:
                raise ServiceUnavailable("The token issuer's keys cannot be fetched; retry later")
            return self._keys

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        try:
            self._keys = import_jwks(self._fetch())
            self._fetched_at = now
        except (httpx.HTTPError, VaultError, ValueError) as error:
            # Keep the keys we had: a provider's outage must not lock everyone out.
            log.warning("JWKS fetch failed for %s: %s", self.url, type(error).__name__)

    def _fetch(self) -> Any:
        with (
            httpx.Client(timeout=self._timeout, follow_redirects=False) as client,
            client.stream("GET", self.url, headers={"Accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS too large")
        return json.loads(bytes(body))


def _holds(keys: KeySet, kid: str | None) -> bool:
    if kid is None:
        return True
    return any(key.kid == kid for key in keys)
