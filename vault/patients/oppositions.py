"""Refusing to create the space of a person who opposed it (docs/lifecycle.md): where
records are created (``PatientService.ensure``). Opposing and withdrawing are in
vault/records/oppositions.py."""

from __future__ import annotations

from vault.access.policy import Actor, Purpose
from vault.access.records import AuditRecord, Outcome
from vault.access.service import AccessDenied
from vault.db import Session
from vault.identity.principal import Role
from vault.models import Opposition


class Opposed(AccessDenied):
    """A push that would create the space of a person who opposed it. 409: the refusal
    is about that person's standing choice, which they may withdraw."""

    status_code = 409
    issue_code = "business-rule"

    def __init__(self, record: AuditRecord) -> None:
        super().__init__(record)
        self.message = "This person opposed the creation of their space: nothing was stored"
        self.args = (self.message,)


def opposition(session: Session, index: bytes) -> Opposition | None:
    """The opposition of the person whose INS has this blind index, if any."""
    return session.get(Opposition, index)


def refuse_if_opposed(session: Session, actor: Actor, index: bytes) -> None:
    """Before a record is created for the INS whose index this is."""
    if opposition(session, index) is None:
        return
    raise Opposed(
        AuditRecord(
            action="C",
            outcome=Outcome.DENIED,
            purpose=(
                Purpose.PATIENT_REQUEST
                if actor.principal.role in (Role.PATIENT, Role.CAREGIVER)
                else Purpose.TREATMENT
            ).value,
            principal=actor.principal,
            resource_type="Patient",
            actor_patient_id=actor.own_patient_id,
            detail={"permission": "patient:create", "reason": "the person opposed their space"},
        )
    )
