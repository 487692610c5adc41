"""Ed25519 signatures on checkpoints, in the C2SP signed-note format (the format of Go's
checksum database and of transparency-log checkpoints), so existing tools can check them.

A note is UTF-8 text: the body, a blank line, then one line per signature:
``— <name> <base64(key hash (4 bytes) || Ed25519 signature (64 bytes))>``.
The key hash is ``SHA-256(name || "\\n" || 0x01 || public key)[:4]``; a verifier key is
published as ``<name>+<key hash in hex>+<base64(0x01 || public key)>``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vault.errors import VaultError
from vault.keyfiles import create_private_file

ED25519 = b"\x01"
SIGNATURE_DASH = "\u2014"
KEY_FILE = "audit-signing-key.pem"


class SignatureError(VaultError):
    """A note or key that cannot be parsed or does not verify."""


def key_hash(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


@dataclass(frozen=True)
class NoteVerifier:
    name: str
    public_key: bytes

    @property
    def key_id(self) -> str:
        return key_hash(self.name, self.public_key).hex()

    @property
    def verifier_key(self) -> str:
        encoded = base64.b64encode(ED25519 + self.public_key).decode()
        return f"{self.name}+{self.key_id}+{encoded}"

    @classmethod
    def parse(cls, text: str) -> NoteVerifier:
        try:
            name, hash_hex, encoded = text.strip().split("+", 2)
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise SignatureError("A verifier key reads name+keyhash+base64key") from None
        if raw[:1] != ED25519 or len(raw) != 33:
            raise SignatureError("Only Ed25519 verifier keys are supported")
        verifier = cls(name, raw[1:])
        if verifier.key_id != hash_hex.lower():
            raise SignatureError("The verifier key's hash does not match its key")
        return verifier

    def verify(self, body: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, body)
        except InvalidSignature:
            return False
        return True


class NoteSigner:
    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self.name = name
        self._key = private_key
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.verifier = NoteVerifier(name, raw)

    def sign(self, body: str) -> str:
        """The signed note: ``body`` (which ends with a newline) plus its signature line."""
        if not body.endswith("\n") or "\n\n" in body:
            raise SignatureError("A note body is newline-terminated lines, none empty")
        signature = self._key.sign(body.encode())
        blob = base64.b64encode(key_hash(self.name, self.verifier.public_key) + signature)
        return f"{body}\n{SIGNATURE_DASH} {self.name} {blob.decode()}\n"


@dataclass(frozen=True)
class OpenedNote:
    body: str
    key_id: str


def open_note(note: str, verifiers: list[NoteVerifier]) -> OpenedNote:
    """The body of a note signed by one of ``verifiers``; SignatureError otherwise."""
    body, separator, signatures = note.partition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise SignatureError("Not a signed note")
    body += "\n"
    known = {(v.name, key_hash(v.name, v.public_key)): v for v in verifiers}
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != SIGNATURE_DASH:
            raise SignatureError("Malformed signature line")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:
            raise SignatureError("Malformed signature line") from None
        verifier = known.get((parts[1], blob[:4]))
        if verifier is not None and len(blob) == 68 and verifier.verify(body.encode(), blob[4:]):
            return OpenedNote(body=body, key_id=verifier.key_id)
    raise SignatureError("No valid signature from a trusted key")


class SigningKey:
    """The log's key: ``VAULT_AUDIT_SIGNING_KEY`` (PKCS#8 PEM or a base64 32-byte seed),
    else a file in the data dir, created (mode 0600) the first time a checkpoint is
    signed. Reading or verifying the log never creates it."""

    def __init__(self, name: str, configured: str | None, data_dir: Path) -> None:
        self.name = name
        self._configured = configured
        self._data_dir = data_dir
        self._signer: NoteSigner | None = None

    def signer(self) -> NoteSigner:
        if self._signer is None:
            self._signer = NoteSigner(self.name, load_private_key(self._configured, self._data_dir))
        return self._signer

    def verifier_if_present(self) -> NoteVerifier | None:
        absent = not self._configured and not (self._data_dir / KEY_FILE).exists()
        if self._signer is None and absent:
            return None
        return self.signer().verifier


def load_private_key(configured: str | None, data_dir: Path) -> Ed25519PrivateKey:
    if configured:
        return _parse_private_key(configured.encode())
    path = data_dir / KEY_FILE
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Several server processes may start at once: the first key wins, and nobody ever
        # reads a half-written file.
        create_private_file(path, pem)
    return _parse_private_key(path.read_bytes())


def _parse_private_key(material: bytes) -> Ed25519PrivateKey:
    try:
        if material.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(material, password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(
                base64.b64decode(material.strip(), validate=True)
            )
    except ValueError:
        raise SignatureError("The audit signing key is not a usable Ed25519 key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError("The audit signing key must be an Ed25519 key")
    return key
