"""The backup file: a short clear header, then one encrypted, authenticated stream.

Layout::

    b"VAULTBAK"  u32 header length  header (JSON)  sealed stream

The header says only what is needed to open the stream: the format, the backup's id and
time, and the archive key wrapped by the key provider's master key. The stream is sealed
with the same segmented AES-256-GCM construction as documents (vault/storage/crypto.py),
its associated data binding the header, so a changed header, a reordered, truncated or
altered segment all fail authentication. Without the key provider the file reveals
nothing but its size.

Inside, a sequence of frames ``kind (1) | name length (u16) | name | data length (u32) |
data``: the backup's description first, then table rows in batches, then each blob as a
start frame followed by chunk frames, then a closing summary.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.errors import IntegrityError, VaultError
from vault.storage import crypto
from vault.storage.keys.provider import KeyProvider

MAGIC = b"VAULTBAK"
FORMAT = 1
SEGMENT_SIZE = 1024 * 1024
READ_SIZE = 1024 * 1024

INFO = b"I"
ROWS = b"T"
BLOB = b"B"
CHUNK = b"C"
SUMMARY = b"Z"

_FRAME_HEAD = struct.Struct(">cH")
_LENGTH = struct.Struct(">I")


class BackupError(VaultError):
    status_code = 400
    issue_code = "invalid"


@dataclass(frozen=True)
class Header:
    backup_id: str
    created_at: str
    master_key_id: str
    wrapped_key: bytes
    segment_size: int
    format: int = FORMAT

    def encode(self) -> bytes:
        document = {
            "format": self.format,
            "kind": "vault-data-backup",
            "backup_id": self.backup_id,
            "created_at": self.created_at,
            "master_key_id": self.master_key_id,
            "wrapped_key": base64.b64encode(self.wrapped_key).decode(),
            "segment_size": self.segment_size,
        }
        return json.dumps(document, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Header:
        try:
            document = json.loads(raw)
            if document.get("kind") != "vault-data-backup" or document.get("format") != FORMAT:
                raise BackupError("Not a vault data backup of a format this vault reads")
            return cls(
                backup_id=str(document["backup_id"]),
                created_at=str(document["created_at"]),
                master_key_id=str(document["master_key_id"]),
                wrapped_key=base64.b64decode(document["wrapped_key"]),
                segment_size=int(document["segment_size"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackupError("The backup's header is damaged") from None


def _key_context(backup_id: str) -> bytes:
    return crypto.associated_data("vault-backup-key", backup_id)


def _stream_context(header: bytes) -> bytes:
    return crypto.associated_data("vault-backup", hashlib.sha256(header).hexdigest())


class _Sealer:
    """The writing half of crypto.open_segments: a segment is sealed once the next byte
    exists, since only then is it known not to be the last."""

    def __init__(self, out: BinaryIO, key: bytes, context: bytes, segment_size: int) -> None:
        self._out = out
        self._aead = AESGCM(key)
        self._context = context
        self._segment_size = segment_size
        header = crypto.stream_header()
        self._prefix = header[1:]
        out.write(header)
        self._buffer = bytearray()
        self._index = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) > self._segment_size:
            self._emit(bytes(self._buffer[: self._segment_size]), last=False)
            del self._buffer[: self._segment_size]

    def finish(self) -> None:
        self._emit(bytes(self._buffer), last=True)
        self._buffer.clear()

    def _emit(self, plaintext: bytes, *, last: bool) -> None:
        nonce = self._prefix + struct.pack(">IB", self._index, 1 if last else 0)
        self._out.write(self._aead.encrypt(nonce, plaintext, self._context))
        self._index += 1


class ArchiveWriter:
    """Writes ``<path>.part`` and renames it only once complete and flushed to disk, so an
    interrupted backup never leaves a file that looks like a backup."""

    def __init__(self, path: Path, provider: KeyProvider) -> None:
        self.path = path
        self._partial = path.with_name(path.name + ".part")
        archive_key = crypto.new_data_key()
        backup_id = str(uuid.uuid4())
        master_key_id, wrapped = provider.wrap(archive_key, _key_context(backup_id))
        self.header = Header(
            backup_id=backup_id,
            created_at=datetime.now(UTC).isoformat(),
            master_key_id=master_key_id,
            wrapped_key=wrapped,
            segment_size=SEGMENT_SIZE,
        )
        encoded = self.header.encode()
        fd = os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._file.write(MAGIC + _LENGTH.pack(len(encoded)) + encoded)
        self._sealer = _Sealer(self._file, archive_key, _stream_context(encoded), SEGMENT_SIZE)

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self._complete()
        else:
            self._file.close()
            self._partial.unlink(missing_ok=True)

    def frame(self, kind: bytes, name: str, data: bytes) -> None:
        encoded = name.encode()
        self._sealer.write(_FRAME_HEAD.pack(kind, len(encoded)) + encoded)
        self._sealer.write(_LENGTH.pack(len(data)) + data)

    def json_frame(self, kind: bytes, name: str, document: Any) -> None:
        self.frame(kind, name, json.dumps(document, separators=(",", ":")).encode())

    def blob(self, key: str, chunks: Iterable[bytes]) -> int:
        self.frame(BLOB, key, b"")
        size = 0
        for chunk in chunks:
            for start in range(0, len(chunk), READ_SIZE):
                piece = chunk[start : start + READ_SIZE]
                self.frame(CHUNK, "", piece)
                size += len(piece)
        return size

    def _complete(self) -> None:
        self._sealer.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._partial.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@dataclass(frozen=True)
class Frame:
    kind: bytes
    name: str
    data: bytes


def read_header(handle: BinaryIO) -> tuple[Header, bytes]:
    if handle.read(len(MAGIC)) != MAGIC:
        raise BackupError("Not a vault data backup")
    raw_length = handle.read(_LENGTH.size)
    if len(raw_length) != _LENGTH.size:
        raise BackupError("The backup is truncated")
    (length,) = _LENGTH.unpack(raw_length)
    if length > 64 * 1024:
        raise BackupError("The backup's header is damaged")
    raw = handle.read(length)
    return Header.decode(raw), raw


class ArchiveReader:
    """Decrypts while it reads; any alteration raises IntegrityError where it is met."""

    def __init__(self, path: Path, provider: KeyProvider) -> None:
        self.path = path
        self._handle = path.open("rb")
        try:
            self.header, raw = read_header(self._handle)
            try:
                key = provider.unwrap(
                    self.header.master_key_id,
                    self.header.wrapped_key,
                    _key_context(self.header.backup_id),
                )
            except IntegrityError:
                raise BackupError(
                    "The key provider cannot open this backup: the master key it was made "
                    f"under ({self.header.master_key_id}) is not in this keyring, or was retired"
                ) from None
        except BaseException:
            self._handle.close()
            raise
        self._plain = _Bytes(
            crypto.open_segments(
                key, _chunks(self._handle), _stream_context(raw), self.header.segment_size
            )
        )
        self._peeked: Frame | None = None

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def next_frame(self) -> Frame | None:
        if self._peeked is not None:
            frame, self._peeked = self._peeked, None
            return frame
        head = self._plain.read(_FRAME_HEAD.size)
        if not head:
            return None
        if len(head) != _FRAME_HEAD.size:
            raise IntegrityError("The backup ends in the middle of a frame")
        kind, name_length = _FRAME_HEAD.unpack(head)
        name = self._plain.read_exact(name_length).decode()
        (length,) = _LENGTH.unpack(self._plain.read_exact(_LENGTH.size))
        return Frame(kind, name, self._plain.read_exact(length))

    def blob_chunks(self) -> Iterator[bytes]:
        """The chunks following a blob's start frame."""
        while True:
            frame = self.next_frame()
            if frame is None:
                return
            if frame.kind != CHUNK:
                self._peeked = frame
                return
            yield frame.data


class _Bytes:
    """Exact reads over the decrypted segments, without copying a segment per read."""

    def __init__(self, source: Iterator[bytes]) -> None:
        self._source = source
        self._buffer = b""
        self._position = 0

    def read(self, size: int) -> bytes:
        available = len(self._buffer) - self._position
        if available >= size:
            out = self._buffer[self._position : self._position + size]
            self._position += size
            return out
        parts = [self._buffer[self._position :]]
        while available < size:
            more = next(self._source, None)
            if more is None:
                break
            parts.append(more)
            available += len(more)
        joined = b"".join(parts)
        self._buffer, self._position = joined, min(size, len(joined))
        return joined[:size]

    def read_exact(self, size: int) -> bytes:
        out = self.read(size)
        if len(out) != size:
            raise IntegrityError("The backup ends in the middle of a frame")
        return out


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(READ_SIZE):
        yield chunk
