"""Engine and sessions. One transaction per unit of work; services flush, callers commit.

The rooms above the repositories name a unit of work (``Session``) and the factory that
opens one (``SessionFactory``) from here: they hand them down to their repositories, which
(with the models) are the only modules that build SQL and so the only ones that import
SQLAlchemy (pyproject's ``sql-in-repositories`` contract). The database errors the HTTP
surface maps to statuses are named here for the same reason.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "DBAPIError",
    "DataError",
    "Engine",
    "IntegrityError",
    "OperationalError",
    "SQLAlchemyError",
    "Session",
    "SessionFactory",
    "make_engine",
    "make_session_factory",
    "ping",
    "statements_alone",
    "unit_of_work",
]

SessionFactory: TypeAlias = sessionmaker[Session]

# libpq parameters the vault sets unless the URL's query names them (docs/operations.md).
# A server that does not answer must cost a request a few seconds, not a hang: a connection
# attempt gives up after connect_timeout and moves on to the next host of a multi-host URL;
# TCP keepalives and tcp_user_timeout find a connection whose server vanished without a
# word (a machine powered off, a partition) instead of waiting for the kernel's minutes.
CONNECTION_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "3",
    "keepalives_count": "3",
    "tcp_user_timeout": "20000",
}


def make_engine(
    url: str, *, prepared_statements: bool = True, pool_size: int = 10, max_overflow: int = 10
) -> Engine:
    """An engine for ``url``. ``prepared_statements=False`` is for a pooler in transaction
    mode that does not track them (PgBouncer before 1.21): psycopg would otherwise prepare
    a statement on one server connection and run it on another."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "before_cursor_execute", _refuse_nul)
        return engine
    parsed = make_url(url)
    parsed = parsed.update_query_dict(
        {name: value for name, value in CONNECTION_DEFAULTS.items() if name not in parsed.query}
    )
    connect_args: dict[str, Any] = {}
    if not prepared_statements:
        connect_args["prepare_threshold"] = None
    engine = create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # A connection from before a failover or a restart is tested before use, and one
        # found dead empties the pool of its elders (SQLAlchemy's default on a disconnect):
        # the next request connects afresh, to whichever server now takes writes.
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    event.listen(engine, "handle_error", _read_only_server_is_gone)
    return engine


# read_only_sql_transaction: the server this connection reached no longer takes writes (a
# primary demoted under it). Its connections are of no more use than broken ones.
_NO_LONGER_PRIMARY = "25006"


def _read_only_server_is_gone(context: ExceptionContext) -> None:
    """Treat a write refused by a read-only server as a lost connection: SQLAlchemy then
    drops it and the pool's older ones (the request answers 503 like any outage), and the
    next connection goes, through target_session_attrs=read-write, to the new primary."""
    if getattr(context.original_exception, "sqlstate", None) == _NO_LONGER_PRIMARY:
        context.is_disconnect = True


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    # Codes and security labels are case-sensitive, as PostgreSQL's LIKE is: the access
    # filter of a search (vault.access.policy.readable) must admit exactly what the
    # decision function does.
    cursor.execute("PRAGMA case_sensitive_like=ON")
    cursor.close()


def _refuse_nul(
    _connection: Any,
    _cursor: Any,
    _statement: str,
    parameters: Any,
    _context: Any,
    executemany: bool,
) -> None:
    """Refuse a NUL character in a text parameter, as PostgreSQL does.

    SQLite would store it, and a LIKE pattern holding one is cut short there and matches
    everything: the same input must get the same answer (a DataError, 400) on both backends.
    """
    for row in parameters if executemany else (parameters,):
        values = row.values() if isinstance(row, dict) else row
        if any(isinstance(value, str) and "\x00" in value for value in values):
            raise sqlite3.DataError("A text value holds a NUL character")


def ping(engine: Engine) -> None:
    """One round trip on a connection of the pool: raises when the database does not answer."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


def statements_alone(session: Session) -> None:
    """Run the session's statements each on its own, outside any transaction, until it ends:
    for a request that only reads, with the default READ COMMITTED, where each statement
    sees its own snapshot anyway and a transaction around them adds nothing but a BEGIN and
    a COMMIT, two round trips. Call it before the session's first statement. SQLite's
    BEGIN is no round trip: it keeps its transaction. The pool gives the connection back
    to the next request in its usual mode."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


@contextmanager
def unit_of_work(factory: SessionFactory) -> Iterator[Session]:
    """Commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
