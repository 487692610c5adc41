"""Rows to JSON and back, column type by column type, so that a backup taken from SQLite
restores into PostgreSQL and the other way round."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Protocol


class Column(Protocol):
    """What the codec reads of a column: its name, and its type's ``python_type`` (a
    SQLAlchemy column, reflected by vault/backup/repository.py, is one)."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> Any: ...


class Table(Protocol):
    @property
    def columns(self) -> Iterable[Column]: ...


def _python_type(column: Column) -> type | None:
    try:
        found: type = column.type.python_type
    except NotImplementedError:
        return None
    return found


def _utc_iso(value: dt.datetime) -> str:
    # SQLite hands back naive datetimes, PostgreSQL aware ones in the session's zone; the
    # vault writes UTC, so store UTC explicitly whatever the source said.
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC).isoformat()
    return value.astimezone(dt.UTC).isoformat()


def _encoder(value: Any) -> Callable[[Any], Any] | None:
    if isinstance(value, bytes | bytearray | memoryview):
        return lambda raw: base64.b64encode(bytes(raw)).decode("ascii")
    if isinstance(value, dt.datetime):
        return _utc_iso
    if isinstance(value, dt.date | dt.time):
        return lambda raw: raw.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str
    return None


_DECODERS: dict[type, Callable[[Any], Any]] = {
    bytes: base64.b64decode,
    dt.datetime: dt.datetime.fromisoformat,
    dt.date: dt.date.fromisoformat,
    dt.time: dt.time.fromisoformat,
    Decimal: Decimal,
    uuid.UUID: uuid.UUID,
}


def encode_value(value: Any) -> Any:
    encoder = _encoder(value)
    return value if encoder is None else encoder(value)


def decode_value(column: Column, value: Any) -> Any:
    kind = _python_type(column)
    decoder = _DECODERS.get(kind) if kind is not None else None
    if value is None or decoder is None:
        return value
    return decoder(value)


def encode_row(table: Table, row: Mapping[Any, Any]) -> dict[str, Any]:
    return {column.name: encode_value(row[column.name]) for column in table.columns}


def decode_row(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """Columns the backup does not know (added by a later migration) keep their default."""
    return {
        column.name: decode_value(column, row[column.name])
        for column in table.columns
        if column.name in row
    }
