"""``db:``: ciphertext in the database, chunked, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session, sessionmaker

from vault.errors import NotFound
from vault.models import StoredBlobChunk
from vault.storage.blobs.base import READ_CHUNK, check_key


class DatabaseBlobStore:
    transactional = True

    def __init__(self, session_factory: sessionmaker[Session], list_page_size: int = 1000) -> None:
        self._session_factory = session_factory
        self.list_page_size = list_page_size

    def put(self, session: Session, key: str, chunks: Iterable[bytes]) -> None:
        check_key(key)
        buffer = bytearray()
        index = 0
        for chunk in chunks:
            buffer += chunk
            while len(buffer) >= READ_CHUNK:
                session.add(
                    StoredBlobChunk(key=key, chunk_index=index, data=bytes(buffer[:READ_CHUNK]))
                )
                del buffer[:READ_CHUNK]
                index += 1
        if buffer or index == 0:
            session.add(StoredBlobChunk(key=key, chunk_index=index, data=bytes(buffer)))
        session.flush()

    def read(self, key: str) -> Iterator[bytes]:
        check_key(key)
        first = self._chunk(key, 0)
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

    def _chunk(self, key: str, index: int) -> tuple[bytes, bool] | None:
        """A chunk, and whether another follows: a one-chunk document (most of them)
        is read in one query."""
        # One short read transaction per chunk keeps no connection pinned while a slow
        # client downloads a large document.
        following = (
            select(StoredBlobChunk.chunk_index)
            .where(StoredBlobChunk.key == key, StoredBlobChunk.chunk_index == index + 1)
            .exists()
        )
        with self._session_factory() as session:
            row = session.execute(
                select(StoredBlobChunk.data, following).where(
                    StoredBlobChunk.key == key, StoredBlobChunk.chunk_index == index
                )
            ).first()
        return (bytes(row[0]), bool(row[1])) if row is not None else None

    def delete(self, session: Session, key: str) -> None:
        check_key(key)
        session.execute(delete(StoredBlobChunk).where(StoredBlobChunk.key == key))

    def list_older_than(self, cutoff: datetime) -> Iterator[str]:
        # Page by key, each page in its own short transaction: the sweep deletes between
        # pages, which a long-lived reader would block on SQLite.
        after = ""
        while True:
            with self._session_factory() as session:
                page = list(
                    session.scalars(
                        select(StoredBlobChunk.key)
                        .where(
                            StoredBlobChunk.chunk_index == 0,
                            StoredBlobChunk.created_at < cutoff,
                            StoredBlobChunk.key > after,
                        )
                        .order_by(StoredBlobChunk.key)
                        .limit(self.list_page_size)
                    )
                )
            yield from page
            if len(page) < self.list_page_size:
                return
            after = page[-1]

    def drop_interrupted(self, cutoff: datetime) -> int:
        # put() runs inside the caller's transaction: an interrupted write rolls back.
        return 0

    def check(self) -> None:
        with self._session_factory() as session:
            session.execute(text("SELECT 1"))
