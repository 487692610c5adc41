"""A patient's address and the secrets around it: sealed under the patient's key, links
signed by the key provider's keyed digest, confirmation tokens kept only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from vault.db import Session
from vault.models import NotificationContact
from vault.storage import crypto
from vault.storage.envelope import Envelope, Sealed
from vault.storage.keys.provider import KeyProvider


def events_of(stored: str) -> frozenset[str]:
    return frozenset(stored.split())


def events_column(events: frozenset[str] | tuple[str, ...]) -> str:
    return " " + " ".join(sorted(events)) + " " if events else " "


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _address_context(patient_id: str, version: int) -> bytes:
    return crypto.associated_data("NotificationContact", patient_id, version)


def _secret_context(patient_id: str, email_id: int) -> bytes:
    return crypto.associated_data("NotificationEmail", patient_id, email_id)


class ContactKeys:
    def __init__(self, envelope: Envelope, provider: KeyProvider) -> None:
        self._envelope = envelope
        self._provider = provider

    def seal_address(self, session: Session, patient_id: str, version: int, address: str) -> Sealed:
        return self._envelope.seal_json(
            session, patient_id, {"address": address}, _address_context(patient_id, version)
        )

    def address(self, session: Session, contact: NotificationContact) -> str | None:
        if contact.address_ciphertext is None or contact.kek_id is None:
            return None
        opened = self._envelope.open_json(
            session,
            contact.patient_id,
            contact.address_ciphertext,
            contact.address_dek,
            contact.kek_id,
            _address_context(contact.patient_id, contact.version),
        )
        return str(opened["address"])

    def seal_secret(self, session: Session, patient_id: str, email_id: int, token: str) -> Sealed:
        return self._envelope.seal_json(
            session, patient_id, {"token": token}, _secret_context(patient_id, email_id)
        )

    def open_secret(
        self,
        session: Session,
        patient_id: str,
        email_id: int,
        ciphertext: bytes | None,
        wrapped_dek: bytes | None,
        kek_id: str | None,
    ) -> str | None:
        if ciphertext is None or wrapped_dek is None or kek_id is None:
            return None
        opened = self._envelope.open_json(
            session,
            patient_id,
            ciphertext,
            wrapped_dek,
            kek_id,
            _secret_context(patient_id, email_id),
        )
        return str(opened["token"])

    def unsubscribe_token(self, patient_id: str, version: int) -> str:
        """The opt-out link's proof: a keyed digest of the record and the address version,
        so it needs no storage, cannot be forged, and dies with the address."""
        return self._provider.blind_index(
            "notification-unsubscribe", f"{patient_id}|{version}".encode()
        ).hex()

    def unsubscribe_valid(self, patient_id: str, version: int, token: str) -> bool:
        return hmac.compare_digest(self.unsubscribe_token(patient_id, version), token)
