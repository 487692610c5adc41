"""The one place that decides access and records it.

Every read, search, write, change and content download goes through ``authorize``: it asks
the pure decision function, writes the audit entry in the caller's transaction when the
access goes ahead, and raises ``AccessDenied`` -- carrying its own audit record, written
after the rollback -- when it does not.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from vault.access.permissions import AUDIT_ACTION, Permission
from vault.access.policy import Actor, Decision, DocumentFacts, decide
from vault.access.principal import INS_SYSTEMS, Principal, Role
from vault.audit.records import AuditRecord, Outcome
from vault.audit.service import AuditService
from vault.errors import NotFound
from vault.models import Patient
from vault.storage.keys.provider import KeyProvider


class AccessDenied(NotFound):
    """Answered as 404 so that what may not be seen is indistinguishable from absence."""

    def __init__(self, record: AuditRecord, what: str = "Resource") -> None:
        super().__init__(f"{what} not found")
        self.audit_record = record


def ins_index(provider: KeyProvider, system: str, value: str) -> bytes:
    # Both INS namespaces name the same person space for lookups.
    namespace = "ins" if system in INS_SYSTEMS else system
    return provider.blind_index("patient-identifier", f"{namespace}|{value}".encode())


class AccessService:
    def __init__(self, audit: AuditService, keys: KeyProvider) -> None:
        self.audit = audit
        self._keys = keys

    def actor(self, session: Session, principal: Principal) -> Actor:
        own = None
        if principal.role is Role.PATIENT:
            own = session.scalar(
                select(Patient.id).where(
                    Patient.ins_index == ins_index(self._keys, "ins", principal.subject)
                )
            )
        return Actor(principal=principal, own_patient_id=own)

    def check(
        self,
        actor: Actor,
        permission: Permission,
        patient_id: str,
        document: DocumentFacts | None = None,
    ) -> Decision:
        """Decide without recording: for filtering search results, whose one search is
        recorded by ``authorize``."""
        return decide(actor, permission, patient_id, document)

    def authorize(
        self,
        session: Session,
        actor: Actor,
        permission: Permission,
        patient_id: str,
        *,
        document: DocumentFacts | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        detail: dict[str, str] | None = None,
        not_found_as: str = "Resource",
    ) -> Decision:
        decision = decide(actor, permission, patient_id, document)
        record = AuditRecord(
            action=AUDIT_ACTION[permission],
            outcome=Outcome.SUCCESS if decision.allowed else Outcome.DENIED,
            purpose=decision.purpose.value,
            principal=actor.principal,
            patient_id=patient_id,
            resource_type=resource_type,
            resource_id=resource_id,
            actor_patient_id=actor.own_patient_id,
            detail={"permission": permission.value, "reason": decision.reason, **(detail or {})},
        )
        if not decision.allowed:
            raise AccessDenied(record, not_found_as)
        self.audit.append(session, record)
        return decision

    def record(self, session: Session, record: AuditRecord) -> None:
        self.audit.append(session, record)
