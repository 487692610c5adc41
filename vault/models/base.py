from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# Stable constraint names so Alembic migrations are deterministic on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An instant, stored in UTC and read back as an aware UTC datetime on every backend.

    SQLite has no time zone type: SQLAlchemy writes the wall-clock digits and drops the offset
    (a ``+02:00`` expiry was stored two hours late) and reads back naive values that cannot be
    compared with the aware ones the code holds. Normalising to UTC before the value reaches the
    driver keeps SQLite's text comparisons in instant order too. A naive value is taken as UTC,
    as ``timestamptz`` does with a session in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            # A date alone would reach the driver unconverted: say so where the bug is.
            raise TypeError(f"UTCDateTime takes a datetime, not {type(value).__name__}")
        instant = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            return instant.replace(tzinfo=None)
        return instant

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        instant: datetime = value
        if instant.tzinfo is None:
            return instant.replace(tzinfo=UTC)
        return instant.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A stored time, aware: SQLite hands back the UTC it was given without its zone."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
