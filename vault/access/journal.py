"""Appending to the log, inside the caller's transaction.

The chain head row is claimed with an upsert before anything is read, which takes the
row lock on PostgreSQL and the write lock on SQLite, so two writers of one chain queue
instead of forking it, while writers of different chains never meet.

Every audited request pays for this, so each append is two statements on PostgreSQL, built
once: the claim (which also draws the entry's id from its sequence), then the entry, the
chain head's new hash and the patient's notification, if any, together in one statement.
SQLite, which has neither sequences nor writing CTEs, takes a statement for each.

The claim also says which audit log (Merkle tree) the chain belongs to: a new chain is
assigned one by ``log_of`` when its head is created, and keeps it for ever (the head's
``log_id``); the entry carries it.
"""

from __future__ import annotations

import hashlib
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
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert, Update

from vault.access import notifications
from vault.access.chain import GENESIS, NO_PATIENT_CHAIN, canonical_fields, entry_hash
from vault.access.records import AuditRecord, WrittenEntry
from vault.models import AuditChainHead, AuditEntry, AuditTreeHead
from vault.models.base import utcnow
from vault.observability import metrics

_HEADS = cast(Table, AuditChainHead.__table__)
# The transaction in which this session last claimed a chain head (see ``holds_chain``).
_CHAIN_CLAIMED_IN = "vault.audit.chain_claimed_in"
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


def chain_number(chain_key: str) -> int:
    """A stable number for a chain key, whatever the process (not Python's ``hash``):
    the chain's log is this modulo the number of logs."""
    return int.from_bytes(hashlib.sha256(chain_key.encode()).digest()[:8], "big") >> 1


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


class AuditService:
    def append(self, session: Session, record: AuditRecord) -> WrittenEntry:
        chain_key = record.patient_id or NO_PATIENT_CHAIN
        dialect = session.get_bind().dialect.name
        built = _statements(dialect)
        claimed = session.execute(
            built.claim, {"chain_key": chain_key, "chain_number": chain_number(chain_key)}
        ).one()
        session.info[_CHAIN_CLAIMED_IN] = session.get_transaction()
        seq, prev_hash, log_id = int(claimed[0]), bytes(claimed[1]), int(claimed[2])
        principal = record.principal
        fields: dict[str, Any] = {
            "chain_key": chain_key,
            "chain_seq": seq,
            "occurred_at": utcnow(),
            "patient_id": record.patient_id,
            "action": record.action,
            "outcome": record.outcome.value,
            "purpose": record.purpose,
            "actor_role": record.acting_role
            or (principal.role.value if principal else "anonymous"),
            "actor_id": record.acting_id if record.acting_role else _actor_id(record),
            "on_behalf_of": record.acting_for or (principal.on_behalf_of if principal else None),
            "client_id": principal.client_id if principal else None,
            "token_id": principal.token_id if principal else None,
            "source_ip": principal.source_ip if principal else None,
            "resource_type": record.resource_type,
            "resource_id": record.resource_id,
            "detail": dict(record.detail),
        }
        digest = entry_hash(prev_hash, canonical_fields(**fields))
        entry = WrittenEntry(id=int(claimed[3]), prev_hash=prev_hash, entry_hash=digest, **fields)
        params = _entry_params(entry, log_id)
        if dialect == "postgresql":
            outbox = notifications.outbox_row(entry)
            session.execute(_write_at_once(outbox is not None), {**params, **(outbox or {})})
        else:
            session.execute(built.insert_entry, params)
            session.execute(built.move_head, params)
            outbox = notifications.outbox_row(entry)
            if outbox is not None:
                session.execute(built.enqueue, outbox)
        # What the caller added before the access is written with its record, as always.
        session.flush()
        metrics.audit_appended(session, record.outcome.value)
        return entry

    def append_standalone(self, factory: sessionmaker[Session], record: AuditRecord) -> None:
        """For refusals and failures: the request's own transaction is rolled back, but the
        attempt must still be on record."""
        with factory() as session, session.begin():
            self.append(session, record)


def holds_chain(session: Session) -> bool:
    """Whether this session's open transaction holds a chain head it claimed (row-locked
    until it ends). Such a transaction must not wait for the read committer
    (``vault.access.group``): the committer may need that very head, and would wait for it."""
    held = session.info.get(_CHAIN_CLAIMED_IN)
    return held is not None and held is session.get_transaction()


def _entry_params(entry: WrittenEntry, log_id: int) -> dict[str, Any]:
    # The log is the chain's, not part of what the entry's hash covers.
    return {
        f"e_{name}": log_id if name == "log_id" else getattr(entry, name) for name in _ENTRY_VALUES
    }


def _actor_id(record: AuditRecord) -> str | None:
    principal = record.principal
    if principal is None:
        return None
    if principal.role.value == "patient":
        return record.actor_patient_id
    return principal.subject
