"""The SQL of appending to the audit log (vault/access/journal): the chain head's claim,
and the entry, the head's new hash and the patient's notification, built once per
dialect. PostgreSQL writes the three in one statement after the claim; SQLite, which has
neither sequences nor writing CTEs, takes a statement for each.

A group of entries (the reads' committer's, ``claim_many`` and ``write_many``) takes two
statements on PostgreSQL whatever its size: the claim binds its chains as arrays and the
write its rows as JSON arrays, which ``unnest`` and ``json_populate_recordset`` turn back
into rows, so the statements' text, and their plans, are the same for a group of one and
of a hundred."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    BindParameter,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    bindparam,
    case,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.sql.elements import Grouping

from vault.access import notifications
from vault.access.chain import GENESIS
from vault.access.repository import outbox_insert_many, outbox_json
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


# -- a group of entries at once (PostgreSQL) ------------------------------------------------


def batches(session: Session) -> bool:
    """Whether ``claim_many`` and ``write_many`` serve this session's database: SQLite, one
    writer at a time and neither sequences nor arrays, appends one entry at a time."""
    return session.get_bind().dialect.name == "postgresql"


@dataclass(frozen=True)
class ClaimedRun:
    """The next links of one chain, claimed for several entries at once under its head's
    row lock: sequence numbers from ``first_seq`` on, and the entries' ids in that order."""

    first_seq: int
    prev_hash: bytes
    log_id: int
    entry_ids: list[int]


def _array(name: str, item: Any) -> BindParameter[Any]:
    return bindparam(name, type_=postgresql.ARRAY(item))


@cache
def _claim_many() -> Insert:
    """Every chain's head claimed in one statement, in the order of the bound arrays (the
    chain keys' order: the order in which every writer takes head locks). A head moves on
    by its chain's count of entries, and comes back with that many ids drawn from the
    entries' sequence right after its row is locked, as each ``claim`` draws its own: so a
    chain's ids still grow with its sequence numbers, whoever appends to it."""
    chain_keys = _array("chain_keys", String())
    counts = _array("counts", BigInteger())
    chains = (
        func.unnest(chain_keys, _array("chain_numbers", BigInteger()), counts)
        .table_valued("chain_key", "chain_number", "count", with_ordinality="ordinal")
        .render_derived("chains")
    )
    # RETURNING sees the head's row, not the claim's: its count is found by its key.
    count = Grouping(counts)[func.array_position(chain_keys, _HEADS.c.chain_key, type_=Integer)]
    entry_ids = (
        select(func.array_agg(func.nextval("audit_entries_id_seq")))
        .select_from(func.generate_series(1, count))
        .scalar_subquery()
    )
    return (
        postgresql.insert(_HEADS)
        .from_select(
            ["chain_key", "last_seq", "last_hash", "log_id"],
            select(
                chains.c.chain_key,
                chains.c.count,
                bindparam("genesis", GENESIS, type_=LargeBinary),
                chains.c.chain_number % _LOG_COUNT,
            ).order_by(chains.c.ordinal),
        )
        .on_conflict_do_update(
            index_elements=["chain_key"],
            set_={"last_seq": _HEADS.c.last_seq + postgresql.insert(_HEADS).excluded.last_seq},
        )
        .returning(
            _HEADS.c.chain_key, _HEADS.c.last_seq, _HEADS.c.last_hash, _HEADS.c.log_id, entry_ids
        )
    )


def claim_many(session: Session, chains: list[tuple[str, int, int]]) -> dict[str, ClaimedRun]:
    """Claims ``count`` links of each chain ``(chain_key, chain_number, count)``, in the
    order given, which must be the chain keys' order: one statement."""
    rows = session.execute(
        _claim_many(),
        {
            "chain_keys": [key for key, _number, _count in chains],
            "chain_numbers": [number for _key, number, _count in chains],
            "counts": [count for _key, _number, count in chains],
        },
    )
    wanted = {key: count for key, _number, count in chains}
    claimed: dict[str, ClaimedRun] = {}
    for key, last_seq, last_hash, log_id, entry_ids in rows:
        claimed[key] = ClaimedRun(
            int(last_seq) - wanted[key] + 1, bytes(last_hash), int(log_id), sorted(entry_ids)
        )
    return claimed


@cache
def _write_many(notify: bool) -> Insert | Update:
    """The entries, their chains' heads' new hashes and their notifications' rows, in one
    statement: the claim holds the heads' row locks, so they move exactly as separate
    statements would move them. Each set of rows is bound as one JSON array (binding a
    column of values as a PostgreSQL array costs the driver far more, value by value)."""
    names = tuple(_ENTRY_VALUES)
    entries = _rows(_ENTRIES, "entries").table_valued(*names)
    insert_entries = (
        postgresql.insert(_ENTRIES)
        .from_select(list(names), select(*(entries.c[name] for name in names)))
        .cte("entry")
    )
    heads = _rows(_HEADS, "heads").table_valued("chain_key", "last_hash")
    move_heads = (
        update(_HEADS)
        .where(_HEADS.c.chain_key == heads.c.chain_key)
        .values(last_hash=heads.c.last_hash)
    )
    if notify:
        return outbox_insert_many().add_cte(insert_entries, move_heads.cte("head"))
    return move_heads.add_cte(insert_entries)


def _rows(table: Table, name: str) -> Any:
    """The rows of ``table`` bound as the JSON array ``name``, with the table's own columns
    (whichever a row leaves out are NULL)."""
    return func.json_populate_recordset(
        literal_column(f"NULL::{table.name}"), sql_cast(bindparam(name, type_=Text), JSON)
    )


def write_many(
    session: Session,
    entries: list[Any],
    log_ids: list[int],
    heads: dict[str, bytes],
    outbox: list[dict[str, Any]],
) -> None:
    """The entries (written entries, with their chains' logs), each chain's head's new
    hash and the notifications' rows (``notifications.outbox_row``'s, in the entries'
    order): one statement."""
    rows = []
    for entry, log_id in zip(entries, log_ids, strict=True):
        row = {name: getattr(entry, name) for name in _PLAIN_ENTRY_COLUMNS}
        row["occurred_at"] = entry.occurred_at.isoformat()
        row["prev_hash"] = _bytea(entry.prev_hash)
        row["entry_hash"] = _bytea(entry.entry_hash)
        row["log_id"] = log_id
        rows.append(row)
    params = {
        "entries": json.dumps(rows),
        "heads": json.dumps(
            [{"chain_key": key, "last_hash": _bytea(digest)} for key, digest in heads.items()]
        ),
    }
    if outbox:
        params["outbox"] = outbox_json(outbox)
    session.execute(_write_many(bool(outbox)), params)


# The entry's columns that JSON holds as they are.
_PLAIN_ENTRY_COLUMNS = tuple(
    name
    for name in _ENTRY_VALUES
    if name not in {"occurred_at", "prev_hash", "entry_hash", "log_id"}
)


def _bytea(value: bytes) -> str:
    # bytea's text form, which json_populate_recordset hands to its input function.
    return "\\x" + value.hex()
