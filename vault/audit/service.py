"""Appending to the log, inside the caller's transaction.

The chain head row is claimed with an upsert before anything is read, which takes the
row lock on PostgreSQL and the write lock on SQLite, so two writers of one chain queue
instead of forking it, while writers of different chains never meet.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from vault.audit import notifications
from vault.audit.chain import GENESIS, NO_PATIENT_CHAIN, canonical_fields, entry_hash
from vault.audit.records import AuditRecord
from vault.models import AuditChainHead, AuditEntry
from vault.models.base import utcnow
from vault.observability import metrics


class AuditService:
    def append(self, session: Session, record: AuditRecord) -> AuditEntry:
        chain_key = record.patient_id or NO_PATIENT_CHAIN
        seq, prev_hash = self._claim_next(session, chain_key)
        principal = record.principal
        fields = {
            "chain_key": chain_key,
            "chain_seq": seq,
            "occurred_at": utcnow(),
            "patient_id": record.patient_id,
            "action": record.action,
            "outcome": record.outcome.value,
            "purpose": record.purpose,
            "actor_role": principal.role.value if principal else "anonymous",
            "actor_id": _actor_id(record),
            "on_behalf_of": principal.on_behalf_of if principal else None,
            "client_id": principal.client_id if principal else None,
            "token_id": principal.token_id if principal else None,
            "source_ip": principal.source_ip if principal else None,
            "resource_type": record.resource_type,
            "resource_id": record.resource_id,
            "detail": dict(record.detail),
        }
        digest = entry_hash(prev_hash, canonical_fields(**fields))  # type: ignore[arg-type]
        entry = AuditEntry(**fields, prev_hash=prev_hash, entry_hash=digest)
        session.add(entry)
        session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.chain_key == chain_key)
            .values(last_hash=digest)
        )
        session.flush()
        metrics.audit_appended(session, record.outcome.value)
        notifications.enqueue(session, entry)
        return entry

    def append_standalone(self, factory: sessionmaker[Session], record: AuditRecord) -> None:
        """For refusals and failures: the request's own transaction is rolled back, but the
        attempt must still be on record."""
        with factory() as session, session.begin():
            self.append(session, record)

    @staticmethod
    def _claim_next(session: Session, chain_key: str) -> tuple[int, bytes]:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # One round trip: a new chain's head is created at 1, an existing one is moved
        # on under its row lock, and either way the claimed link comes back.
        claimed = (
            insert(AuditChainHead)
            .values(chain_key=chain_key, last_seq=1, last_hash=GENESIS)
            .on_conflict_do_update(
                index_elements=["chain_key"],
                set_={"last_seq": AuditChainHead.last_seq + 1},
            )
            .returning(AuditChainHead.last_seq, AuditChainHead.last_hash)
        )
        seq, last_hash = session.execute(claimed).one()
        return int(seq), bytes(last_hash)


def _actor_id(record: AuditRecord) -> str | None:
    principal = record.principal
    if principal is None:
        return None
    if principal.role.value == "patient":
        return record.actor_patient_id
    return principal.subject
