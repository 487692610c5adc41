"""The ``local:`` key provider: master keys in a keyring file readable only by its owner.

Good for development and small deployments; production hosts should prefer an HSM
(``pkcs11:``), where master keys cannot be copied off the machine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.errors import IntegrityError, VaultError

NONCE_BYTES = 12


class KeyringError(VaultError):
    status_code = 503
    issue_code = "transient"


class LocalKeyProvider:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data = self._load_or_create()

    def _load_or_create(self) -> dict[str, Any]:
        if self.path.exists():
            mode = self.path.stat().st_mode & 0o777
            if mode & 0o077:
                raise KeyringError(
                    f"Keyring {self.path} is readable by others (mode {mode:o}); chmod 600 it"
                )
            data: dict[str, Any] = json.loads(self.path.read_text())
            return data
        self.path.parent.mkdir(parents=True, exist_ok=True)
        first = _new_master_key()
        data = {
            "format": 1,
            "current": first["id"],
            "master_keys": [first],
            "index_key": _b64(secrets.token_bytes(32)),
        }
        self._write(data)
        return data

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)

    def _master_key(self, master_key_id: str) -> bytes:
        for entry in self._data["master_keys"]:
            if entry["id"] == master_key_id:
                return base64.b64decode(entry["key"])
        raise IntegrityError("A key needed to decrypt this record is no longer available")

    def current_master_key_id(self) -> str:
        return str(self._data["current"])

    def wrap(self, key: bytes, context: bytes) -> tuple[str, bytes]:
        master_key_id = self.current_master_key_id()
        nonce = os.urandom(NONCE_BYTES)
        aad = master_key_id.encode() + b"\x00" + context
        wrapped = nonce + AESGCM(self._master_key(master_key_id)).encrypt(nonce, key, aad)
        return master_key_id, wrapped

    def unwrap(self, master_key_id: str, wrapped: bytes, context: bytes) -> bytes:
        aad = master_key_id.encode() + b"\x00" + context
        try:
            return AESGCM(self._master_key(master_key_id)).decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad
            )
        except InvalidTag:
            raise IntegrityError("A wrapped key does not authenticate") from None

    def rotate(self) -> str:
        with self._lock:
            entry = _new_master_key()
            data = {**self._data, "master_keys": [*self._data["master_keys"], entry]}
            data["current"] = entry["id"]
            self._write(data)
            self._data = data
            return str(entry["id"])

    def retire(self, master_key_id: str) -> None:
        with self._lock:
            if master_key_id == self.current_master_key_id():
                raise VaultError("The current master key cannot be retired")
            keys = [k for k in self._data["master_keys"] if k["id"] != master_key_id]
            data = {**self._data, "master_keys": keys}
            self._write(data)
            self._data = data

    def master_key_ids(self) -> list[str]:
        return [str(k["id"]) for k in self._data["master_keys"]]

    def blind_index(self, purpose: str, value: bytes) -> bytes:
        key = base64.b64decode(self._data["index_key"])
        return hmac.new(key, purpose.encode() + b"\x00" + value, hashlib.sha256).digest()

    def check(self) -> None:
        if not self.path.exists():
            raise KeyringError("Keyring file is missing")


def _new_master_key() -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return {
        "id": f"local-{stamp}-{secrets.token_hex(4)}",
        "key": _b64(AESGCM.generate_key(bit_length=256)),
        "created_at": datetime.now(UTC).isoformat(),
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
