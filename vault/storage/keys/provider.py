"""What a key provider must do. Master keys never leave the provider in clear (for an HSM)
or leave only the keyring file (local provider)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from vault.errors import ServiceUnavailable


class KeyProviderError(ServiceUnavailable):
    """The provider cannot be used right now (keyring unreadable, HSM unreachable, bad PIN).

    Answered as 503: nothing is wrong with the record, and retrying later may succeed.
    """


class KeyProvider(Protocol):
    def current_master_key_id(self) -> str:
        """The master key new wraps use."""
        ...

    def wrap(self, key: bytes, context: bytes) -> tuple[str, bytes]:
        """Wrap ``key`` under the current master key, bound to ``context``.

        Returns the master key id and the wrapped bytes.
        """
        ...

    def unwrap(self, master_key_id: str, wrapped: bytes, context: bytes) -> bytes: ...

    def rotate(self) -> str:
        """Create a new current master key; older ones stay usable for unwrapping."""
        ...

    def retire(self, master_key_id: str) -> None:
        """Destroy an old master key. Callers first make sure nothing is wrapped by it."""
        ...

    def master_key_ids(self) -> list[str]:
        """Every master key the provider holds, oldest first."""
        ...

    def master_key_created_at(self, master_key_id: str) -> datetime | None:
        """When the master key was made -- or, for a provider that keeps only the day, the
        latest it can have been made -- None if the provider does not know. Retirement
        reads it to tell how long ago a key stopped being current."""
        ...

    def blind_index(self, purpose: str, value: bytes) -> bytes:
        """Keyed, deterministic 32-byte digest used to look up identifiers stored encrypted."""
        ...

    def check(self) -> None:
        """Raise if the provider cannot be used right now (readiness probe)."""
        ...
