"""The ``local:`` key provider: master keys in a keyring file readable only by its owner.

Good for development and small deployments; production hosts should prefer an HSM
(``pkcs11:``), where master keys cannot be copied off the machine.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.errors import IntegrityError, VaultError
from vault.keyfiles import create_private_file, replace_private_file
from vault.storage.keys.provider import KeyProviderError

NONCE_BYTES = 12
TAG_BYTES = 16


class KeyringError(KeyProviderError):
    pass


class LocalKeyProvider:
    """Master keys and the blind-index key in one JSON file, mode 0600.

    Several processes may share the file (``vault serve --workers``, ``vault keys rotate``
    next to a running server): it is created atomically, re-read when it changes, and
    rewritten only under an exclusive lock after re-reading it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._data = self._load_or_create()

    def _load_or_create(self) -> dict[str, Any]:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            first = _new_master_key()
            data = {
                "format": 1,
                "current": first["id"],
                "master_keys": [first],
                "index_key": _b64(secrets.token_bytes(32)),
            }
            # Of two first starts, one keyring wins and the other process reads it instead
            # of overwriting it.
            create_private_file(self.path, _serialise(data))
        return self._read()

    def _read(self) -> dict[str, Any]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise KeyringError(f"Keyring {self.path} is missing") from None
        mode = stat.st_mode & 0o777
        if mode & 0o077:
            raise KeyringError(
                f"Keyring {self.path} is accessible to others (mode {mode:o}); chmod 600 it"
            )
        data: dict[str, Any] = json.loads(self.path.read_text())
        self._stamp = _stamp(stat)
        return data

    def _current_data(self) -> dict[str, Any]:
        """The keyring as on disk now: another process may have rotated or retired."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise KeyringError(f"Keyring {self.path} is missing") from None
        if _stamp(stat) != self._stamp:
            with self._lock:
                self._data = self._read()
        return self._data

    @contextmanager
    def _exclusive(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under a lock file, so concurrent rotations never lose a key."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        with self._lock:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield self._read()
            finally:
                os.close(fd)

    def _replace(self, data: dict[str, Any]) -> None:
        replace_private_file(self.path, _serialise(data))
        self._data = self._read()

    def _master_key(self, master_key_id: str) -> bytes:
        for entry in self._current_data()["master_keys"]:
            if entry["id"] == master_key_id:
                return base64.b64decode(entry["key"])
        raise IntegrityError("A key needed to decrypt this record is no longer available")

    def current_master_key_id(self) -> str:
        return str(self._current_data()["current"])

    def wrap(self, key: bytes, context: bytes) -> tuple[str, bytes]:
        master_key_id = self.current_master_key_id()
        nonce = os.urandom(NONCE_BYTES)
        aad = master_key_id.encode() + b"\x00" + context
        wrapped = nonce + AESGCM(self._master_key(master_key_id)).encrypt(nonce, key, aad)
        return master_key_id, wrapped

    def unwrap(self, master_key_id: str, wrapped: bytes, context: bytes) -> bytes:
        if len(wrapped) < NONCE_BYTES + TAG_BYTES:
            raise IntegrityError("A wrapped key is malformed")
        aad = master_key_id.encode() + b"\x00" + context
        try:
            return AESGCM(self._master_key(master_key_id)).decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad
            )
        except InvalidTag:
            raise IntegrityError("A wrapped key does not authenticate") from None

    def rotate(self) -> str:
        with self._exclusive() as data:
            entry = _new_master_key()
            self._replace(
                {**data, "master_keys": [*data["master_keys"], entry], "current": entry["id"]}
            )
            return str(entry["id"])

    def retire(self, master_key_id: str) -> None:
        with self._exclusive() as data:
            if master_key_id == data["current"]:
                raise VaultError("The current master key cannot be retired")
            keys = [k for k in data["master_keys"] if k["id"] != master_key_id]
            self._replace({**data, "master_keys": keys})

    def master_key_ids(self) -> list[str]:
        return [str(k["id"]) for k in self._current_data()["master_keys"]]

    def master_key_created_at(self, master_key_id: str) -> datetime | None:
        for entry in self._current_data()["master_keys"]:
            if entry["id"] == master_key_id:
                stamp = entry.get("created_at")
                return datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
        return None

    def blind_index(self, purpose: str, value: bytes) -> bytes:
        key = base64.b64decode(self._data["index_key"])
        return hmac.new(key, purpose.encode() + b"\x00" + value, hashlib.sha256).digest()

    def check(self) -> None:
        self._current_data()


def _serialise(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=2).encode()


def _new_master_key() -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return {
        "id": f"local-{stamp}-{secrets.token_hex(4)}",
        "key": _b64(AESGCM.generate_key(bit_length=256)),
        "created_at": datetime.now(UTC).isoformat(),
    }


def _stamp(stat: os.stat_result) -> tuple[int, ...]:
    # The mode is part of it so that a keyring made readable to others is refused at once.
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size, stat.st_mode)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
