"""The backup's SQL: a consistent snapshot read table by table, an empty database loaded
from one, and the deletions a restore replays.

Tables are reflected from the database rather than taken from the models: a backup carries
whatever schema revision it was taken at, and the restore loads it before upgrading.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, MetaData, Table, func, inspect, select, text
from sqlalchemy.orm import Session

from vault.models import Binary, Document, PatientKey

__all__ = ["Connection", "Table"]

_LIVE_BLOBS = Binary.wrapped_dek.is_not(None)


def begin_snapshot(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    elif connection.dialect.name == "sqlite":
        # pysqlite opens transactions only before writes; without an explicit BEGIN every
        # SELECT would see a different moment.
        connection.exec_driver_sql("BEGIN")
    # Pin the snapshot now, before anything is counted.
    connection.execute(text("SELECT 1"))


def tables(connection: Connection, skipped: Iterable[str] = ("alembic_version",)) -> list[Table]:
    """The database's tables as it has them, in foreign-key order, but ``skipped``."""
    left_out = frozenset(skipped)
    metadata = MetaData()
    metadata.reflect(connection)
    return [table for table in metadata.sorted_tables if table.name not in left_out]


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def schema_revision(connection: Connection) -> str | None:
    """The Alembic revision the database is at; None when it has none (or no such table)."""
    try:
        revision = connection.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception:  # noqa: BLE001 - any failure here means "not a migrated vault"
        return None
    return str(revision) if revision else None


def recorded_revision(connection: Connection) -> str | None:
    """The revision in alembic_version, which the caller knows to exist."""
    revision = connection.scalar(text("SELECT version_num FROM alembic_version"))
    return None if revision is None else str(revision)


def count_rows(connection: Connection, table: Table) -> int:
    return int(connection.scalar(select(func.count()).select_from(table)) or 0)


def table_rows(connection: Connection, table: Table, batch: int) -> Iterator[Mapping[Any, Any]]:
    """Every row, in primary key order (all columns' for a table without one)."""
    order = list(table.primary_key.columns) or list(table.columns)
    result = connection.execute(select(table).order_by(*order).execution_options(yield_per=batch))
    for row in result:
        yield row._mapping


def count_live_blobs(connection: Connection) -> int:
    """The blobs a binary still needs: those of shredded documents are left out."""
    return int(connection.scalar(select(func.count()).select_from(Binary).where(_LIVE_BLOBS)) or 0)


def live_blob_keys(connection: Connection) -> Iterator[str]:
    return iter(
        connection.execute(
            select(Binary.blob_key)
            .where(_LIVE_BLOBS)
            .order_by(Binary.blob_key)
            .execution_options(yield_per=1000)
        ).scalars()
    )


def master_key_ids(connection: Connection) -> list[str]:
    """The master keys the patient keys are wrapped under."""
    return sorted(connection.scalars(select(PatientKey.master_key_id).distinct()))


def deletions(connection: Connection) -> Iterator[tuple[str, datetime | None]]:
    """(document id, deleted at) of each deleted document."""
    for row in connection.execute(
        select(Document.id, Document.deleted_at).where(Document.deleted_at.is_not(None))
    ):
        yield row.id, row.deleted_at


def deletions_in_order(session: Session) -> list[tuple[str, datetime | None]]:
    """As ``deletions``, through a session, by document id."""
    rows = session.execute(
        select(Document.id, Document.deleted_at)
        .where(Document.deleted_at.is_not(None))
        .order_by(Document.id)
    )
    return [(document_id, deleted_at) for document_id, deleted_at in rows]


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    session.execute(table.insert(), rows)


def reset_sequences(connection: Connection) -> None:
    """Rows were inserted with their ids; PostgreSQL's sequences must continue after them."""
    if connection.dialect.name != "postgresql":
        return
    for table in tables(connection):
        for column in table.primary_key.columns:
            sequence = connection.scalar(
                text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": table.name, "column": column.name},
            )
            if sequence is None:
                continue
            highest = connection.scalar(select(func.max(column)))
            connection.execute(
                text("SELECT setval(:sequence, :value, :called)"),
                {"sequence": sequence, "value": highest or 1, "called": highest is not None},
            )
