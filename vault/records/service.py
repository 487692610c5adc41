"""Closing, deleting and reopening a record, over HTTP (docs/lifecycle.md).

- **Close** (``RECORD_CLOSE``, the patient or a legal representative): from then on
  ``decide`` refuses every access to the record but these four (the rule is in
  vault/access/policy.py, so searches' filters agree); delegations end, invitations lapse,
  exports stop; the record is kept, encrypted, ``retention_days``, then crypto-shredded by
  ``vault records purge`` (vault/records/purge.py). The vault's own entry "archived" tells
  the patient (a ``space-closed`` notification).
- **Delete now** (``RECORD_DELETE``), at closure or later while the record is kept: the
  purge shreds it within ``early_deletion_days``.
- **Reopen** (``RECORD_REOPEN``), while not deleted: the record, its documents and its
  policy come back as they were (less the delegations closing ended); a deletion asked for
  and not yet done is called off.

Each step is decided and recorded by the access service in the request's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from vault.access import repository as access_repository
from vault.access.permissions import Permission
from vault.access.policy import Actor, Purpose
from vault.access.records import AuditRecord, Outcome
from vault.access.service import AccessService
from vault.db import Session
from vault.errors import Conflict
from vault.models import RecordLifecycle
from vault.models.base import as_utc, utcnow
from vault.records import repository
from vault.records.repository import CLOSED, DELETED, OPEN

log = logging.getLogger("vault.records")


@dataclass(frozen=True)
class Standing:
    """Where a record stands, as its holder is shown it."""

    status: str
    closed_at: datetime | None = None
    retention_until: datetime | None = None
    deletion_requested_at: datetime | None = None
    deletion_due_at: datetime | None = None
    deleted_at: datetime | None = None
    reopened_at: datetime | None = None

    @classmethod
    def of(cls, row: RecordLifecycle | None) -> Standing:
        if row is None:
            return cls(OPEN)

        def utc(value: datetime | None) -> datetime | None:
            return as_utc(value) if value is not None else None

        closed = row.status != OPEN
        return cls(
            status=row.status,
            closed_at=utc(row.closed_at) if closed else None,
            retention_until=utc(row.retention_until) if closed else None,
            deletion_requested_at=utc(row.deletion_requested_at),
            deletion_due_at=utc(row.deletion_due_at) if closed else None,
            deleted_at=utc(row.shredded_at),
            reopened_at=utc(row.reopened_at),
        )


class RecordService:
    def __init__(
        self,
        access: AccessService,
        *,
        retention_days: int,
        early_deletion_days: int,
        export_dir: Path,
    ) -> None:
        self.access = access
        self.retention = timedelta(days=retention_days)
        self.early = timedelta(days=early_deletion_days)
        self._export_dir = export_dir

    def _authorize(
        self,
        session: Session,
        actor: Actor,
        permission: Permission,
        patient_id: str,
        detail: dict[str, str] | None = None,
    ) -> None:
        """The record locked, then the access decided and recorded: a record that does not
        exist is refused as one the caller may not see."""
        if repository.lock_patient(session, patient_id) is None:
            raise self.access.refuse_unknown(
                session,
                actor,
                permission,
                resource_type="Patient",
                resource_id=patient_id,
                not_found_as="Patient",
            )
        self.access.authorize(
            session,
            actor,
            permission,
            patient_id,
            resource_type="Patient",
            resource_id=patient_id,
            detail=detail,
            not_found_as="Patient",
        )

    def status(self, session: Session, actor: Actor, patient_id: str) -> Standing:
        self._authorize(session, actor, Permission.RECORD_STATUS, patient_id)
        return Standing.of(repository.lifecycle(session, patient_id))

    def close(
        self, session: Session, actor: Actor, patient_id: str, *, delete_now: bool = False
    ) -> Standing:
        now = utcnow()
        retention_until = now + self.retention
        self._authorize(
            session,
            actor,
            Permission.RECORD_CLOSE,
            patient_id,
            {"stage": "closed", "retention_until": retention_until.isoformat()},
        )
        row = repository.lifecycle(session, patient_id)
        if row is not None and row.status != OPEN:
            raise Conflict("This space is already closed")
        if row is None:
            row = RecordLifecycle(patient_id=patient_id, status=CLOSED)
            session.add(row)
        row.status = CLOSED
        row.closed_at = now
        row.retention_until = retention_until
        row.deletion_requested_at = None
        row.deletion_due_at = retention_until
        row.updated_at = now
        version = access_repository.next_version(session, patient_id, now)
        ended = repository.end_delegations(session, patient_id, version, now)
        stopped = repository.stop_exports(session, patient_id)
        session.flush()
        # The vault's own act, which tells the patient (a space-closed notification).
        self.access.record(
            session,
            vault_record(
                Permission.RECORD_CLOSE,
                patient_id,
                {
                    "stage": "archived",
                    "retention_until": retention_until.isoformat(),
                    "delegations_ended": str(ended),
                },
            ),
        )
        self.access.forget(actor, patient_id)
        for export_id in stopped:
            (self._export_dir / f"{export_id}.zip.sealed").unlink(missing_ok=True)
        if delete_now:
            self._ask_deletion(session, actor, patient_id, row, now)
        return Standing.of(row)

    def request_deletion(self, session: Session, actor: Actor, patient_id: str) -> Standing:
        now = utcnow()
        self._authorize(
            session, actor, Permission.RECORD_DELETE, patient_id, {"stage": "requested"}
        )
        row = repository.lifecycle(session, patient_id)
        if row is None or row.status == OPEN:
            raise Conflict("Only a closed space can be deleted: close it, asking for deletion")
        if row.status == CLOSED and row.deletion_requested_at is None:
            row.deletion_requested_at = now
            row.deletion_due_at = min(as_utc(row.retention_until or now), now + self.early)
            row.updated_at = now
            session.flush()
        return Standing.of(row)

    def _ask_deletion(
        self, session: Session, actor: Actor, patient_id: str, row: RecordLifecycle, now: datetime
    ) -> None:
        due = min(as_utc(row.retention_until or now), now + self.early)
        self.access.authorize(
            session,
            actor,
            Permission.RECORD_DELETE,
            patient_id,
            resource_type="Patient",
            resource_id=patient_id,
            detail={"stage": "requested", "due": due.isoformat()},
            not_found_as="Patient",
        )
        row.deletion_requested_at = now
        row.deletion_due_at = due
        session.flush()

    def reopen(self, session: Session, actor: Actor, patient_id: str) -> Standing:
        now = utcnow()
        self._authorize(session, actor, Permission.RECORD_REOPEN, patient_id, {"stage": "reopened"})
        row = repository.lifecycle(session, patient_id)
        if row is None or row.status == OPEN:
            raise Conflict("This space is open")
        if row.status == DELETED:
            raise Conflict("This space was deleted: it cannot be reopened")
        row.status = OPEN
        row.reopened_at = now
        row.retention_until = None
        row.deletion_requested_at = None
        row.deletion_due_at = None
        row.updated_at = now
        session.flush()
        self.access.forget(actor, patient_id)
        return Standing.of(row)


def vault_record(permission: Permission, patient_id: str, detail: dict[str, str]) -> AuditRecord:
    """An entry for what the vault itself does to a record (archive, shred), as the
    export's "built" is: no principal, the patient's chain."""
    return AuditRecord(
        action="U" if permission is Permission.RECORD_CLOSE else "D",
        outcome=Outcome.SUCCESS,
        purpose=Purpose.PATIENT_REQUEST.value,
        principal=None,
        patient_id=patient_id,
        resource_type="Patient",
        resource_id=patient_id,
        detail={"permission": permission.value, **detail},
    )
