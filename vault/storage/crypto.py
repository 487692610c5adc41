"""AES-256-GCM envelope encryption.

Content is sealed in fixed-size segments (the STREAM construction of Hoang, Reyhanitabar,
Rogaway and Vizár): each segment's nonce is a random per-message prefix, the segment
counter and a last-segment flag, so a large document can be decrypted while it streams
out, and reordering, truncating or splicing segments fails authentication.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.errors import IntegrityError

NONCE_BYTES = 12
TAG_BYTES = 16
PREFIX_BYTES = 7
DEFAULT_SEGMENT_SIZE = 64 * 1024
FORMAT_VERSION = b"\x01"


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """One-shot authenticated encryption: ``version || nonce || ciphertext+tag``."""
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def open_sealed(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    if len(sealed) < 1 + NONCE_BYTES + TAG_BYTES or sealed[:1] != FORMAT_VERSION:
        raise IntegrityError("Stored ciphertext is malformed")
    nonce = sealed[1 : 1 + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, sealed[1 + NONCE_BYTES :], associated_data)
    except InvalidTag:
        raise IntegrityError("Stored ciphertext does not authenticate for this record") from None


def _segment_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def stream_header() -> bytes:
    return FORMAT_VERSION + os.urandom(PREFIX_BYTES)


def seal_segments(
    key: bytes,
    plaintext: bytes,
    associated_data: bytes,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> Iterator[bytes]:
    """Yield the header, then each sealed segment (an empty plaintext is one empty segment)."""
    aead = AESGCM(key)
    header = stream_header()
    prefix = header[1:]
    yield header
    view = memoryview(plaintext)
    count = max(1, -(-len(plaintext) // segment_size))
    for index in range(count):
        chunk = view[index * segment_size : (index + 1) * segment_size]
        nonce = _segment_nonce(prefix, index, index == count - 1)
        yield aead.encrypt(nonce, bytes(chunk), associated_data)


def sealed_size(plaintext_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    count = max(1, -(-plaintext_size // segment_size))
    return 1 + PREFIX_BYTES + plaintext_size + count * TAG_BYTES


def open_segments(
    key: bytes,
    ciphertext_chunks: Iterable[bytes],
    associated_data: bytes,
    segment_size: int,
) -> Iterator[bytes]:
    """Decrypt a segmented stream, yielding plaintext segment by segment.

    Raises IntegrityError on any tampering, including a stream cut at a segment boundary
    (the last segment must carry the last-segment flag).
    """
    aead = AESGCM(key)
    sealed_segment = segment_size + TAG_BYTES
    buffer = bytearray()
    prefix: bytes | None = None
    index = 0
    for chunk in ciphertext_chunks:
        buffer += chunk
        if prefix is None:
            if len(buffer) < 1 + PREFIX_BYTES:
                continue
            if buffer[:1] != FORMAT_VERSION:
                raise IntegrityError("Stored ciphertext is malformed")
            prefix = bytes(buffer[1 : 1 + PREFIX_BYTES])
            del buffer[: 1 + PREFIX_BYTES]
        # Keep one full segment back: only at the end do we know which one is last.
        while len(buffer) > sealed_segment:
            yield _open_segment(
                aead, prefix, index, False, bytes(buffer[:sealed_segment]), associated_data
            )
            del buffer[:sealed_segment]
            index += 1
    if prefix is None or len(buffer) < TAG_BYTES:
        raise IntegrityError("Stored ciphertext is truncated")
    yield _open_segment(aead, prefix, index, True, bytes(buffer), associated_data)


def _open_segment(
    aead: AESGCM, prefix: bytes, index: int, last: bool, sealed: bytes, associated_data: bytes
) -> bytes:
    try:
        return aead.decrypt(_segment_nonce(prefix, index, last), sealed, associated_data)
    except InvalidTag:
        raise IntegrityError("Stored ciphertext does not authenticate for this record") from None


def associated_data(*parts: str | int) -> bytes:
    """Unambiguous encoding of the record a ciphertext belongs to (length-prefixed parts)."""
    out = bytearray()
    for part in parts:
        encoded = str(part).encode()
        out += struct.pack(">I", len(encoded)) + encoded
    return bytes(out)


class SegmentSealer:
    """``seal_segments`` for a stream written piece by piece: a write-only file object
    whose output ``open_segments`` reads back. Holds at most one segment in memory; a
    segment is sealed as the last one only on ``close``, when that is known."""

    def __init__(
        self,
        sink: IO[bytes],
        key: bytes,
        associated_data: bytes,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        self._sink = sink
        self._aead = AESGCM(key)
        self._ad = associated_data
        self._size = segment_size
        header = stream_header()
        self._prefix = header[1:]
        self._buffer = bytearray()
        self._index = 0
        self.closed = False
        sink.write(header)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buffer += data
        # Keep a full segment back: it may turn out to be the last.
        while len(self._buffer) > self._size:
            self._seal(bytes(self._buffer[: self._size]), last=False)
            del self._buffer[: self._size]
        return len(data)

    def flush(self) -> None:
        self._sink.flush()

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self.closed = True
            self._sink.flush()

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        nonce = _segment_nonce(self._prefix, self._index, last)
        self._sink.write(self._aead.encrypt(nonce, chunk, self._ad))
        self._index += 1
