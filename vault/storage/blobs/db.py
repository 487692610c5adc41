"""``db:``: ciphertext in the database, chunked, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, event, insert, select, text
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.orm import Session, sessionmaker

from vault.errors import NotFound
from vault.models import StoredBlobChunk
from vault.models.base import utcnow
from vault.storage.blobs.base import READ_CHUNK, check_key

_CHUNKS = cast(Table, StoredBlobChunk.__table__)
# PostgreSQL sends bytea as hex text unless asked for binary results: twice the bytes,
# encoded by the server and decoded here, most of a millisecond per 100 KB.
_BINARY_RESULTS = "vault_binary_results"
# Built once: rebuilding it for every download cost more than running it.
_CHUNK = (
    select(
        _CHUNKS.c.data,
        select(_CHUNKS.c.chunk_index)
        .where(_CHUNKS.c.key == bindparam("key"), _CHUNKS.c.chunk_index == bindparam("following"))
        .exists(),
    )
    .where(_CHUNKS.c.key == bindparam("key"), _CHUNKS.c.chunk_index == bindparam("index"))
    .execution_options(**{_BINARY_RESULTS: True})
)
_INSERT_CHUNKS = insert(_CHUNKS)


@event.listens_for(PGDialect_psycopg, "do_execute")
def _binary_results(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    """Run a statement that asks for them with binary results; leave the others alone."""
    if not context.execution_options.get(_BINARY_RESULTS):
        return False
    cursor.execute(statement, parameters, binary=True)
    return True


class DatabaseBlobStore:
    transactional = True

    def __init__(self, session_factory: sessionmaker[Session], list_page_size: int = 1000) -> None:
        self._session_factory = session_factory
        self.list_page_size = list_page_size

    def put(self, session: Session, key: str, chunks: Iterable[bytes]) -> None:
        check_key(key)
        buffer = bytearray()
        rows: list[dict[str, object]] = []
        now = utcnow()

        def add(data: bytes) -> None:
            rows.append({"key": key, "chunk_index": len(rows), "data": data, "created_at": now})

        for chunk in chunks:
            buffer += chunk
            while len(buffer) >= READ_CHUNK:
                add(bytes(buffer[:READ_CHUNK]))
                del buffer[:READ_CHUNK]
        if buffer or not rows:
            add(bytes(buffer))
        # A Core insert: chunks are only ever inserted whole, and the ORM's unit of work
        # would cost more than the rest of the write.
        session.execute(_INSERT_CHUNKS, rows)

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
        """A chunk, and whether another follows: a one-chunk document (most of them)
        is read in one query."""
        parameters = {"key": key, "index": index, "following": index + 1}
        if session is not None:
            # The caller's transaction is open anyway: no connection of its own to check out.
            row = session.connection().execute(_CHUNK, parameters).first()
        else:
            # One short read transaction per chunk keeps no connection pinned while a slow
            # client downloads a large document.
            with self._session_factory() as own:
                row = own.connection().execute(_CHUNK, parameters).first()
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
