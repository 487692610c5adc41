"""The blobs' SQL: the ``db:`` store's chunks, and which keys a committed record still needs.

``db.py`` (the store) and ``sweep.py`` run these; nothing else of storage builds SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, event, insert, or_, select, text
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.orm import Session

from vault.models import Binary, StoredBlobChunk

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


def insert_chunks(session: Session, rows: list[dict[str, Any]]) -> None:
    # A Core insert: chunks are only ever inserted whole, and the ORM's unit of work
    # would cost more than the rest of the write.
    session.execute(_INSERT_CHUNKS, rows)


def chunk(session: Session, key: str, index: int) -> tuple[bytes, bool] | None:
    """A chunk, and whether another follows: a one-chunk document (most of them)
    is read in one query."""
    parameters = {"key": key, "index": index, "following": index + 1}
    row = session.connection().execute(_CHUNK, parameters).first()
    return (bytes(row[0]), bool(row[1])) if row is not None else None


def delete_chunks(session: Session, key: str) -> None:
    session.execute(delete(StoredBlobChunk).where(StoredBlobChunk.key == key))


def keys_older_than(session: Session, cutoff: datetime, after: str, limit: int) -> list[str]:
    """A page of the keys written before ``cutoff``, in key order, after ``after``."""
    return list(
        session.scalars(
            select(StoredBlobChunk.key)
            .where(
                StoredBlobChunk.chunk_index == 0,
                StoredBlobChunk.created_at < cutoff,
                StoredBlobChunk.key > after,
            )
            .order_by(StoredBlobChunk.key)
            .limit(limit)
        )
    )


def ping(session: Session) -> None:
    session.execute(text("SELECT 1"))


def needed_keys(session: Session, keys: Iterable[str], cutoff: datetime) -> set[str]:
    """Those of ``keys`` a committed binary points to, unless shredded before ``cutoff``."""
    needed = or_(Binary.shredded_at.is_(None), Binary.shredded_at > cutoff)
    return set(session.scalars(select(Binary.blob_key).where(Binary.blob_key.in_(keys), needed)))
