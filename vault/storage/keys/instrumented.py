"""The key provider, counted and timed for the metrics (vault/observability/metrics.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from vault.observability import metrics
from vault.storage.keys.provider import KeyProvider

P = ParamSpec("P")
T = TypeVar("T")


class InstrumentedKeyProvider:
    """Counts and times every call to the wrapped key provider."""

    def __init__(self, inner: KeyProvider) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        # Provider-specific extras (a keyring's path, an HSM session's close) pass through.
        return getattr(self.inner, name)

    def _call(self, operation: str, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = method(*args, **kwargs)
            outcome = "ok"
            return result
        finally:
            metrics.key_provider_called(operation, outcome, time.perf_counter() - started)

    def current_master_key_id(self) -> str:
        return self._call("current_master_key_id", self.inner.current_master_key_id)

    def wrap(self, key: bytes, context: bytes) -> tuple[str, bytes]:
        return self._call("wrap", self.inner.wrap, key, context)

    def unwrap(self, master_key_id: str, wrapped: bytes, context: bytes) -> bytes:
        return self._call("unwrap", self.inner.unwrap, master_key_id, wrapped, context)

    def rotate(self) -> str:
        return self._call("rotate", self.inner.rotate)

    def retire(self, master_key_id: str) -> None:
        self._call("retire", self.inner.retire, master_key_id)

    def master_key_ids(self) -> list[str]:
        return self._call("master_key_ids", self.inner.master_key_ids)

    def master_key_created_at(self, master_key_id: str) -> datetime | None:
        return self._call("master_key_created_at", self.inner.master_key_created_at, master_key_id)

    def blind_index(self, purpose: str, value: bytes) -> bytes:
        return self._call("blind_index", self.inner.blind_index, purpose, value)

    def check(self) -> None:
        self._call("check", self.inner.check)


def instrument_key_provider(provider: KeyProvider) -> KeyProvider:
    if isinstance(provider, InstrumentedKeyProvider):
        return provider
    instrumented: KeyProvider = InstrumentedKeyProvider(provider)
    return instrumented
