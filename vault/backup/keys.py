"""Key backups, kept apart from data backups.

A data backup is useless without the key provider's master keys, and a key backup holds
no patient data: each alone reveals nothing, which is the point of keeping them in
different places, under different custody.

A key backup holds the ``local:`` keyring (an HSM's keys are backed up with the HSM's own
tooling, never as a file) and the signing keys kept in VAULT_DATA_DIR: the audit log's
checkpoint key (so restored checkpoints still verify) and the embedded token issuer's.
It is sealed with AES-256-GCM under a key derived with scrypt from a passphrase held by
whoever holds custody of the keys.

Crypto-shredding and key backups: key backups expire with the data backups they serve.
Once a master key is retired (vault keys retire), take a new key backup and destroy the
older ones at the end of the data-backup retention period: from then on no copy of the
retired key exists, and every data backup that needed it is noise.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from vault.audit.signing import KEY_FILE as AUDIT_SIGNING_KEY_FILE
from vault.backup.archive import BackupError
from vault.keyfiles import create_private_file
from vault.models.base import utcnow
from vault.settings import Settings

KIND = "vault-key-backup"
ISSUER_KEY_FILE = "issuer-key.json"
DATA_DIR_KEY_FILES = (AUDIT_SIGNING_KEY_FILE, ISSUER_KEY_FILE)
MIN_PASSPHRASE = 12
SCRYPT = {"n": 2**17, "r": 8, "p": 1}


@dataclass(frozen=True)
class KeyMaterial:
    keyring: bytes | None
    files: dict[str, bytes]


def keyring_path(settings: Settings) -> Path | None:
    scheme, _, rest = settings.effective_key_provider.partition(":")
    return Path(rest) if scheme == "local" else None


def collect(settings: Settings) -> KeyMaterial:
    path = keyring_path(settings)
    keyring = path.read_bytes() if path is not None and path.exists() else None
    files = {
        name: (settings.data_dir / name).read_bytes()
        for name in DATA_DIR_KEY_FILES
        if (settings.data_dir / name).is_file()
    }
    if keyring is None and not files:
        raise BackupError("No key material found to back up")
    return KeyMaterial(keyring, files)


def _derive(passphrase: str, salt: bytes, params: dict[str, int]) -> bytes:
    if len(passphrase) < MIN_PASSPHRASE:
        raise BackupError(f"The passphrase must be at least {MIN_PASSPHRASE} characters")
    kdf = Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"])
    return kdf.derive(passphrase.encode())


def seal(material: KeyMaterial, passphrase: str) -> bytes:
    salt = os.urandom(16)
    header = {
        "kind": KIND,
        "format": 1,
        "created_at": utcnow().isoformat(),
        "kdf": {"name": "scrypt", "salt": base64.b64encode(salt).decode(), **SCRYPT},
    }
    plaintext = json.dumps(
        {
            "keyring": base64.b64encode(material.keyring).decode() if material.keyring else None,
            "files": {
                name: base64.b64encode(data).decode() for name, data in material.files.items()
            },
        }
    ).encode()
    nonce = os.urandom(12)
    aad = json.dumps(header, sort_keys=True).encode()
    ciphertext = AESGCM(_derive(passphrase, salt, SCRYPT)).encrypt(nonce, plaintext, aad)
    document = {
        **header,
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    return json.dumps(document, indent=1).encode()


def unseal(raw: bytes, passphrase: str) -> KeyMaterial:
    try:
        document: dict[str, Any] = json.loads(raw)
        nonce = base64.b64decode(document.pop("nonce"))
        ciphertext = base64.b64decode(document.pop("ciphertext"))
        kdf = document["kdf"]
        params = {"n": int(kdf["n"]), "r": int(kdf["r"]), "p": int(kdf["p"])}
        salt = base64.b64decode(kdf["salt"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BackupError("Not a vault key backup") from None
    if document.get("kind") != KIND:
        raise BackupError("Not a vault key backup")
    aad = json.dumps(document, sort_keys=True).encode()
    try:
        plaintext = AESGCM(_derive(passphrase, salt, params)).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise BackupError("Wrong passphrase, or the key backup was altered") from None
    content = json.loads(plaintext)
    return KeyMaterial(
        keyring=base64.b64decode(content["keyring"]) if content["keyring"] else None,
        files={name: base64.b64decode(data) for name, data in content["files"].items()},
    )


def _write_private(path: Path, data: bytes) -> None:
    # Whole or not at all, and never over a key file that exists: a restore cut short
    # leaves no empty key file behind that would stop the vault and the next restore.
    if not create_private_file(path, data):
        raise BackupError(f"Key file exists already, move it away first: {path}")


def install(material: KeyMaterial, settings: Settings) -> list[Path]:
    """Put the keys where this vault's settings look for them. Refuses to overwrite any
    existing key file: merging keyrings is a decision for a person, not a command."""
    targets: list[tuple[Path, bytes]] = []
    if material.keyring is not None:
        path = keyring_path(settings)
        if path is None:
            raise BackupError(
                "The backup holds a local keyring but VAULT_KEY_PROVIDER is not local:"
            )
        targets.append((path, material.keyring))
    targets += [(settings.data_dir / name, data) for name, data in material.files.items()]
    existing = [str(path) for path, _ in targets if path.exists()]
    if existing:
        raise BackupError(f"Key files exist already, move them away first: {', '.join(existing)}")
    for path, data in targets:
        _write_private(path, data)
    return [path for path, _ in targets]
