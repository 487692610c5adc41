"""The SQL of appending to the audit log (vault/access/journal): the chain head's claim,
and the entry, the head's new hash and the patient's notification, built once per
dialect. PostgreSQL writes the three in one statement after the claim; SQLite, which has
neither sequences nor writing CTEs, takes a statement for each."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Table,
    bindparam,
    case,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert, Update

from vault.access import notifications
from vault.access.chain import GENESIS
from vault.db import Session
from vault.models import AuditChainHead, AuditEntry, AuditTreeHead

_HEADS = cast(Table, AuditChainHead.__table__)
_ENTRIES = cast(Table, AuditEntry.__table__)
# The entry's columns, as bound parameters; a checkpoint sets leaf_index later.
_ENTRY_VALUES: dict[str, BindParameter[Any]] = {
    c.name: bindparam(f"e_{c.name}") for c in _ENTRIES.c if c.name != "leaf_index"
}
_TREES = cast(Table, AuditTreeHead.__table__)
# The number of audit logs: one row per log's tree, none yet meaning one.
_LOG_COUNT = (
    select(case((func.count() > 0, func.count()), else_=1)).select_from(_TREES).scalar_subquery()
)


@dataclass(frozen=True)
class _Statements:
    claim: Insert
    insert_entry: Insert
    move_head: Update
    enqueue: Insert


@cache
def _statements(dialect: str) -> _Statements:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # One round trip: a new chain's head is created at 1, an existing one is moved on
    # under its row lock, and either way the claimed link comes back.
    claim = (
        insert(_HEADS)
        .values(
            chain_key=bindparam("chain_key"),
            last_seq=1,
            last_hash=GENESIS,
            log_id=bindparam("chain_number", type_=BigInteger) % _LOG_COUNT,
        )
        .on_conflict_do_update(
            index_elements=["chain_key"], set_={"last_seq": _HEADS.c.last_seq + 1}
        )
        .returning(_HEADS.c.last_seq, _HEADS.c.last_hash, _HEADS.c.log_id)
    )
    if dialect == "postgresql":
        # The id the entry's insert would have drawn from its bigserial's sequence, drawn
        # now so that the notification's row can name the entry in the same statement.
        claim = claim.returning(literal_column("nextval('audit_entries_id_seq')"))
    else:
        # The id is no longer the table's rowid (the key is the chain's): the next one,
        # under the write lock the claim has just taken.
        claim = claim.returning(
            select(func.coalesce(func.max(_ENTRIES.c.id), 0) + 1).scalar_subquery()
        )
    return _Statements(
        claim=claim,
        insert_entry=insert(_ENTRIES).values(_ENTRY_VALUES),
        move_head=update(_HEADS)
        .where(_HEADS.c.chain_key == bindparam("e_chain_key"))
        .values(last_hash=bindparam("e_entry_hash")),
        enqueue=notifications.outbox_insert(insert),
    )


@cache
def _write_at_once(notify: bool) -> Insert | Update:
    """PostgreSQL: the entry, its chain head and its notification in one statement. The
    claim holds the head's row lock, so the head moves exactly as a separate UPDATE would."""
    built = _statements("postgresql")
    entry = built.insert_entry.cte("entry")
    if notify:
        return built.enqueue.add_cte(entry, built.move_head.cte("head"))
    return built.move_head.add_cte(entry)


@dataclass(frozen=True)
class Claimed:
    """A chain's next link, claimed under its head's row lock."""

    seq: int
    prev_hash: bytes
    log_id: int
    entry_id: int


def claim(session: Session, chain_key: str, chain_number: int) -> Claimed:
    built = _statements(session.get_bind().dialect.name)
    row = session.execute(built.claim, {"chain_key": chain_key, "chain_number": chain_number}).one()
    return Claimed(int(row[0]), bytes(row[1]), int(row[2]), int(row[3]))


def write(session: Session, params: dict[str, Any], outbox: dict[str, Any] | None) -> None:
    """The entry (``params``, as ``entry_params`` names them), its chain head's new hash and
    its notification's row, if any."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(_write_at_once(outbox is not None), {**params, **(outbox or {})})
        return
    built = _statements(dialect)
    session.execute(built.insert_entry, params)
    session.execute(built.move_head, params)
    if outbox is not None:
        session.execute(built.enqueue, outbox)


def entry_params(values: Any, log_id: int) -> dict[str, Any]:
    """The entry's bound parameters from its values (a written entry); the log is the
    chain's, not part of what the entry's hash covers."""
    return {
        f"e_{name}": log_id if name == "log_id" else getattr(values, name) for name in _ENTRY_VALUES
    }
