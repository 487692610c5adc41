from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from vault.identity.principal import Principal


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
    # Who acted, when it is not what the principal's role says: a legal representative
    # acts in their own name (their role, their identity) on behalf of the patient.
    acting_role: str | None = None
    acting_id: str | None = None
    acting_for: str | None = None


@dataclass(frozen=True, slots=True)
class WrittenEntry:
    """An audit entry as ``AuditService.append`` wrote it: the stored row's values, without
    loading it back into the session."""

    id: int
    chain_key: str
    chain_seq: int
    occurred_at: datetime
    patient_id: str | None
    action: str
    outcome: str
    purpose: str
    actor_role: str
    actor_id: str | None
    on_behalf_of: str | None
    client_id: str | None
    token_id: str | None
    source_ip: str | None
    resource_type: str | None
    resource_id: str | None
    detail: dict[str, Any]
    prev_hash: bytes
    entry_hash: bytes
