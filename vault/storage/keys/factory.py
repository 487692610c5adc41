from __future__ import annotations

from pathlib import Path

from vault.errors import VaultError
from vault.storage.keys.provider import KeyProvider


def key_provider_from_url(url: str, pin: str | None = None) -> KeyProvider:
    scheme, _, rest = url.partition(":")
    if scheme == "local":
        from vault.storage.keys.local import LocalKeyProvider  # noqa: PLC0415

        return LocalKeyProvider(Path(rest))
    if scheme == "pkcs11":
        from vault.storage.keys.pkcs11 import Pkcs11KeyProvider  # noqa: PLC0415

        return Pkcs11KeyProvider.from_url(url, pin)
    raise VaultError(f"Unknown key provider {scheme!r}; use local: or pkcs11:")
