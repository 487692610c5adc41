"""Envelope encryption of records: a fresh data key per record, wrapped by the patient's
KEK; the associated data names the record, so ciphertext moved elsewhere fails loudly."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from vault.db import Session
from vault.errors import Gone
from vault.observability import metrics
from vault.storage import crypto
from vault.storage.keys.service import KeyService


@dataclass(frozen=True)
class Sealed:
    ciphertext: bytes
    wrapped_dek: bytes
    kek_id: str


@dataclass(frozen=True)
class SealedStream:
    wrapped_dek: bytes
    kek_id: str
    segment_size: int
    chunks: Iterator[bytes]


def dek_context(context: bytes) -> bytes:
    """What a wrapped data key is bound to: its record's context, marked as a key's."""
    return b"dek\x00" + context


class Envelope:
    def __init__(self, keys: KeyService) -> None:
        self.keys = keys

    def seal_json(
        self, session: Session, patient_id: str, resource: dict[str, Any], context: bytes
    ) -> Sealed:
        plaintext = json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode()
        metrics.bytes_encrypted("resource", len(plaintext))
        kek = self.keys.active_kek(session, patient_id)
        dek = crypto.new_data_key()
        return Sealed(
            ciphertext=crypto.seal(dek, plaintext, context),
            wrapped_dek=self.keys.wrap_data_key(kek, dek, dek_context(context)),
            kek_id=kek.id,
        )

    def open_json(
        self,
        session: Session,
        patient_id: str,
        ciphertext: bytes | None,
        wrapped_dek: bytes | None,
        kek_id: str,
        context: bytes,
    ) -> dict[str, Any]:
        if ciphertext is None or wrapped_dek is None:
            raise Gone("This record was deleted and its content destroyed")
        kek = self.keys.kek(session, patient_id, kek_id)
        dek = self.keys.unwrap_data_key(kek, wrapped_dek, dek_context(context))
        document: dict[str, Any] = json.loads(crypto.open_sealed(dek, ciphertext, context))
        return document

    def seal_content(
        self,
        session: Session,
        patient_id: str,
        content: bytes,
        context: bytes,
        segment_size: int = crypto.DEFAULT_SEGMENT_SIZE,
    ) -> SealedStream:
        metrics.bytes_encrypted("content", len(content))
        kek = self.keys.active_kek(session, patient_id)
        dek = crypto.new_data_key()
        return SealedStream(
            wrapped_dek=self.keys.wrap_data_key(kek, dek, dek_context(context)),
            kek_id=kek.id,
            segment_size=segment_size,
            chunks=crypto.seal_segments(dek, content, context, segment_size),
        )

    def content_key(
        self,
        session: Session,
        patient_id: str,
        wrapped_dek: bytes | None,
        kek_id: str,
        context: bytes,
    ) -> bytes:
        """Unwrap now (inside the request's transaction), decrypt later while streaming."""
        if wrapped_dek is None:
            raise Gone("This document was deleted and its content destroyed")
        kek = self.keys.kek(session, patient_id, kek_id)
        return self.keys.unwrap_data_key(kek, wrapped_dek, dek_context(context))

    @staticmethod
    def open_content(
        dek: bytes, chunks: Iterable[bytes], context: bytes, segment_size: int
    ) -> Iterator[bytes]:
        return crypto.open_segments(dek, chunks, context, segment_size)
