"""``file:///path``: one file per blob, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from vault.db import Session
from vault.errors import NotFound, ServiceUnavailable
from vault.storage.blobs.base import READ_CHUNK, check_key, is_key

PARTIAL = ".part"


class FileBlobStore:
    transactional = False

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        check_key(key)
        # Two levels of fan-out keep directories small with millions of documents.
        return self.root / key[:2] / key[2:4] / key

    def put(self, session: Session, key: str, chunks: Iterable[bytes]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + PARTIAL)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # The rename is durable only once the directory entry is on disk.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def read(self, key: str, session: Session | None = None) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise NotFound("Blob not found") from None
        return _chunks(handle)

    def delete(self, session: Session, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list_older_than(self, cutoff: datetime) -> Iterator[str]:
        for path in self._files_older_than(cutoff):
            if is_key(path.name) and path.parent == self._path(path.name).parent:
                yield path.name

    def drop_interrupted(self, cutoff: datetime) -> int:
        dropped = 0
        for path in self._files_older_than(cutoff):
            # A write cut short by a crash: never renamed, so never referenced.
            if path.name.endswith(PARTIAL) and is_key(path.name.removesuffix(PARTIAL)):
                path.unlink(missing_ok=True)
                dropped += 1
        return dropped

    def _files_older_than(self, cutoff: datetime) -> Iterator[Path]:
        limit = cutoff.timestamp()
        for path in self.root.glob("*/*/*"):
            try:
                modified = path.stat().st_mtime
            except FileNotFoundError:
                continue  # removed meanwhile (a concurrent sweep or delete)
            if modified < limit and path.is_file():
                yield path

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise ServiceUnavailable("Blob directory is not writable")


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(READ_CHUNK):
            yield chunk
