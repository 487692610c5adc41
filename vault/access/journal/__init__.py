"""Appending to the log, inside the caller's transaction.

The chain head row is claimed with an upsert before anything is read, which takes the
row lock on PostgreSQL and the write lock on SQLite, so two writers of one chain queue
instead of forking it, while writers of different chains never meet.

Every audited request pays for this, so each append is two statements on PostgreSQL, built
once: the claim (which also draws the entry's id from its sequence), then the entry, the
chain head's new hash and the patient's notification, if any, together in one statement.
SQLite, which has neither sequences nor writing CTEs, takes a statement for each. The
statements are in ``vault.access.journal.repository``.

The claim also says which audit log (Merkle tree) the chain belongs to: a new chain is
assigned one (``chain_number`` modulo the number of logs) when its head is created, and
keeps it for ever (the head's ``log_id``); the entry carries it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from vault.access import notifications
from vault.access.chain import NO_PATIENT_CHAIN, canonical_fields, entry_hash
from vault.access.journal import repository
from vault.access.records import AuditRecord, WrittenEntry
from vault.db import Session, SessionFactory
from vault.models.base import utcnow
from vault.observability import metrics

# The transaction in which this session last claimed a chain head (see ``holds_chain``).
_CHAIN_CLAIMED_IN = "vault.audit.chain_claimed_in"


def chain_number(chain_key: str) -> int:
    """A stable number for a chain key, whatever the process (not Python's ``hash``):
    the chain's log is this modulo the number of logs."""
    return int.from_bytes(hashlib.sha256(chain_key.encode()).digest()[:8], "big") >> 1


class AuditService:
    def append(self, session: Session, record: AuditRecord) -> WrittenEntry:
        chain_key = record.patient_id or NO_PATIENT_CHAIN
        claimed = repository.claim(session, chain_key, chain_number(chain_key))
        session.info[_CHAIN_CLAIMED_IN] = session.get_transaction()
        seq, prev_hash = claimed.seq, claimed.prev_hash
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
        entry = WrittenEntry(id=claimed.entry_id, prev_hash=prev_hash, entry_hash=digest, **fields)
        repository.write(
            session, repository.entry_params(entry, claimed.log_id), notifications.outbox_row(entry)
        )
        # What the caller added before the access is written with its record, as always.
        session.flush()
        metrics.audit_appended(session, record.outcome.value)
        return entry

    def append_standalone(self, factory: SessionFactory, record: AuditRecord) -> None:
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


def _actor_id(record: AuditRecord) -> str | None:
    principal = record.principal
    if principal is None:
        return None
    if principal.role.value == "patient":
        return record.actor_patient_id
    return principal.subject
