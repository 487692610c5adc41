"""Appending to the log, inside the caller's transaction.

The chain head row is claimed with an upsert before anything is read, which takes the
row lock on PostgreSQL and the write lock on SQLite, so two writers of one chain queue
instead of forking it, while writers of different chains never meet.

Every audited request pays for this, so each append is two statements on PostgreSQL, built
once: the claim (which also draws the entry's id from its sequence), then the entry, the
chain head's new hash and the patient's notification, if any, together in one statement.
SQLite, which has neither sequences nor writing CTEs, takes a statement for each. The
statements are in ``vault.access.journal.repository``.

``append_many`` appends a group (the reads' committer's, ``vault.access.group``) in two
statements on PostgreSQL whatever its size: every chain's head claimed at once in chain-key
order, then every entry, head and notification at once. It writes exactly what ``append``
would, record by record in that order (docs/audit.md, "A group in two statements").

The claim also says which audit log (Merkle tree) the chain belongs to: a new chain is
assigned one (``chain_number`` modulo the number of logs) when its head is created, and
keeps it for ever (the head's ``log_id``); the entry carries it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, cast

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
        entry = _link(record, chain_key, claimed.seq, claimed.prev_hash, claimed.entry_id)
        repository.write(
            session, repository.entry_params(entry, claimed.log_id), notifications.outbox_row(entry)
        )
        # What the caller added before the access is written with its record, as always.
        session.flush()
        metrics.audit_appended(session, record.outcome.value)
        return entry

    def append_many(self, session: Session, records: Sequence[AuditRecord]) -> list[WrittenEntry]:
        """The records' entries, exactly as ``append`` would write them one after the other
        in the order of their chain keys (a chain's own records in the order given): that
        is the order in which every writer claims chain heads, so that two groups holding
        the same chains queue rather than deadlock. On PostgreSQL, two statements whatever
        the number of records. The entries come back in the order of ``records``."""
        order = sorted(range(len(records)), key=lambda i: records[i].patient_id or NO_PATIENT_CHAIN)
        # A group of one costs two statements either way, and binding arrays costs more
        # than binding a row.
        if len(records) > 1 and repository.batches(session):
            written = self._append_chains(session, [records[i] for i in order])
        else:
            written = [self.append(session, records[i]) for i in order]
        entries: list[WrittenEntry | None] = [None] * len(records)
        for position, index in enumerate(order):
            entries[index] = written[position]
        return cast(list[WrittenEntry], entries)

    def _append_chains(self, session: Session, ordered: list[AuditRecord]) -> list[WrittenEntry]:
        chains: dict[str, list[AuditRecord]] = {}
        for record in ordered:
            chains.setdefault(record.patient_id or NO_PATIENT_CHAIN, []).append(record)
        claimed = repository.claim_many(
            session, [(key, chain_number(key), len(chain)) for key, chain in chains.items()]
        )
        session.info[_CHAIN_CLAIMED_IN] = session.get_transaction()
        entries: list[WrittenEntry] = []
        log_ids: list[int] = []
        heads: dict[str, bytes] = {}
        outbox: list[dict[str, Any]] = []
        outcomes: dict[str, int] = {}
        for key, chain in chains.items():
            run = claimed[key]
            prev_hash = run.prev_hash
            for offset, record in enumerate(chain):
                entry = _link(record, key, run.first_seq + offset, prev_hash, run.entry_ids[offset])
                entries.append(entry)
                log_ids.append(run.log_id)
                row = notifications.outbox_row(entry)
                if row is not None:
                    outbox.append(row)
                outcomes[entry.outcome] = outcomes.get(entry.outcome, 0) + 1
                prev_hash = entry.entry_hash
            heads[key] = prev_hash
        repository.write_many(session, entries, log_ids, heads, outbox)
        session.flush()
        for outcome, count in outcomes.items():
            metrics.audit_appended(session, outcome, count)
        return entries

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


def _link(
    record: AuditRecord, chain_key: str, seq: int, prev_hash: bytes, entry_id: int
) -> WrittenEntry:
    """The record's entry at ``seq`` in its chain, after the link whose hash is ``prev_hash``."""
    principal = record.principal
    fields: dict[str, Any] = {
        "chain_key": chain_key,
        "chain_seq": seq,
        "occurred_at": utcnow(),
        "patient_id": record.patient_id,
        "action": record.action,
        "outcome": record.outcome.value,
        "purpose": record.purpose,
        "actor_role": record.acting_role or (principal.role.value if principal else "anonymous"),
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
    return WrittenEntry(id=entry_id, prev_hash=prev_hash, entry_hash=digest, **fields)


def _actor_id(record: AuditRecord) -> str | None:
    principal = record.principal
    if principal is None:
        return None
    if principal.role.value == "patient":
        return record.actor_patient_id
    return principal.subject
