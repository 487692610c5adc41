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

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

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
        # One short read transaction per chunk keeps no connection pinned while a slow
        # client downloads a large document.
        index = 0
        while True:
            with self._session_factory() as session:
                data = session.scalar(
                    select(StoredBlobChunk.data).where(
                        StoredBlobChunk.key == key, StoredBlobChunk.chunk_index == index
                    )
                )
            if data is None:
                if index == 0:
                    raise NotFound("Blob not found")
                return
            yield data
            index += 1

    def delete(self, session: Session, key: str) -> None:
        check_key(key)
        session.execute(delete(StoredBlobChunk).where(StoredBlobChunk.key == key))

    def list_older_than(self, cutoff: datetime) -> Iterator[str]:
        with self._session_factory() as session:
            yield from session.scalars(
                select(StoredBlobChunk.key)
                .where(StoredBlobChunk.chunk_index == 0, StoredBlobChunk.created_at < cutoff)
                .order_by(StoredBlobChunk.key)
            )

    def check(self) -> None:
        with self._session_factory() as session:
            session.execute(text("SELECT 1"))
