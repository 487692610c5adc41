"""``db:``: ciphertext in the database, chunked, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from vault.db import Session, SessionFactory
from vault.errors import NotFound
from vault.models.base import utcnow
from vault.storage.blobs import repository
from vault.storage.blobs.base import READ_CHUNK, check_key


def chunk_rows(key: str, chunks: Iterable[bytes], created_at: datetime) -> list[dict[str, Any]]:
    """A blob's rows, cut in chunks of READ_CHUNK bytes (one, empty, for no content): the
    store's and the benchmark loader's (vault/bench/store.py) one way to spell them."""
    buffer = bytearray()
    rows: list[dict[str, Any]] = []

    def add(data: bytes) -> None:
        rows.append({"key": key, "chunk_index": len(rows), "data": data, "created_at": created_at})

    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= READ_CHUNK:
            add(bytes(buffer[:READ_CHUNK]))
            del buffer[:READ_CHUNK]
    if buffer or not rows:
        add(bytes(buffer))
    return rows


class DatabaseBlobStore:
    transactional = True

    def __init__(self, session_factory: SessionFactory, list_page_size: int = 1000) -> None:
        self._session_factory = session_factory
        self.list_page_size = list_page_size

    def put(self, session: Session, key: str, chunks: Iterable[bytes]) -> None:
        check_key(key)
        repository.insert_chunks(session, chunk_rows(key, chunks, utcnow()))

    def read(self, key: str, session: Session | None = None) -> Iterator[bytes]:
        check_key(key)
        first = self._chunk(key, 0, session)
        if first is None:
            raise NotFound("Blob not found")
        return self._chunks(key, first)

    def _chunks(self, key: str, first: tuple[bytes, bool]) -> Iterator[bytes]:
        data, more = first
        yield data
        index = 1
        while more and (found := self._chunk(key, index)) is not None:
            data, more = found
            yield data
            index += 1

    def _chunk(
        self, key: str, index: int, session: Session | None = None
    ) -> tuple[bytes, bool] | None:
        if session is not None:
            # The caller's transaction is open anyway: no connection of its own to check out.
            return repository.chunk(session, key, index)
        # One short read transaction per chunk keeps no connection pinned while a slow
        # client downloads a large document.
        with self._session_factory() as own:
            return repository.chunk(own, key, index)

    def delete(self, session: Session, key: str) -> None:
        check_key(key)
        repository.delete_chunks(session, key)

    def list_older_than(self, cutoff: datetime) -> Iterator[str]:
        # Page by key, each page in its own short transaction: the sweep deletes between
        # pages, which a long-lived reader would block on SQLite.
        after = ""
        while True:
            with self._session_factory() as session:
                page = repository.keys_older_than(session, cutoff, after, self.list_page_size)
            yield from page
            if len(page) < self.list_page_size:
                return
            after = page[-1]

    def drop_interrupted(self, cutoff: datetime) -> int:
        # put() runs inside the caller's transaction: an interrupted write rolls back.
        return 0

    def check(self) -> None:
        with self._session_factory() as session:
            repository.ping(session)
