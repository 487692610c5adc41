from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from vault.access.principal import Principal


class Outcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    FAILED = "failed"


@dataclass(frozen=True)
class AuditRecord:
    """What one access decision leaves in the log: identifiers, never content."""

    action: str
    outcome: Outcome
    purpose: str
    principal: Principal | None
    patient_id: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    # For a patient acting on the vault, their record id: their INS never enters the log.
    actor_patient_id: str | None = None
    # Short, PHI-free facts: the permission, the decision's reason, an error class.
    detail: dict[str, str] = field(default_factory=dict)
