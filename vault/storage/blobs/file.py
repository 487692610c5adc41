"""``file:///path``: one file per blob, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from vault.errors import NotFound, ServiceUnavailable
from vault.storage.blobs.base import READ_CHUNK, check_key


class FileBlobStore:
    transactional = False

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, session: Session, key: str, chunks: Iterable[bytes]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def read(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise NotFound("Blob not found") from None
        return _chunks(handle)

    def delete(self, session: Session, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list_older_than(self, cutoff: datetime) -> Iterator[str]:
        limit = cutoff.timestamp()
        for path in self.root.glob("*/*/*"):
            if path.stat().st_mtime >= limit:
                continue
            if path.suffix == ".part":
                # A write interrupted by a crash: never referenced, safe to drop here.
                path.unlink(missing_ok=True)
            else:
                yield path.name

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise ServiceUnavailable("Blob directory is not writable")


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(READ_CHUNK):
            yield chunk
