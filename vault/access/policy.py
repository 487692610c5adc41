"""The decision function: pure, over (actor, permission, patient, document).

Deny by default: every rule below grants something specific; anything not granted is
refused. The same function answers single reads and filters search results, so what a
caller may not see is indistinguishable from what does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vault.access.permissions import SCOPE_NEEDED, Permission
from vault.access.principal import Principal, Role
from vault.access.scopes import scopes_allow

INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
MASKED = "MASQUE_PS"
INVISIBLE_REPRESENTATIVES = "INVISIBLE_REPRESENTANTS_LEGAUX"


class Purpose(StrEnum):
    """v3 PurposeOfUse codes, as the audit log records them."""

    TREATMENT = "TREAT"
    PATIENT_REQUEST = "PATRQT"
    EMERGENCY = "ETREAT"
    OPERATIONS = "HOPERAT"


@dataclass(frozen=True)
class Actor:
    """A principal plus what the vault knows about them: their own record, if any."""

    principal: Principal
    own_patient_id: str | None = None


@dataclass(frozen=True)
class DocumentFacts:
    patient_id: str
    author_kind: str
    author_id: str
    security_labels: frozenset[str]
    status: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    purpose: Purpose

    def __bool__(self) -> bool:
        return self.allowed


def _deny(reason: str, purpose: Purpose = Purpose.TREATMENT) -> Decision:
    return Decision(False, reason, purpose)


def _allow(reason: str, purpose: Purpose) -> Decision:
    return Decision(True, reason, purpose)


def decide(
    actor: Actor,
    permission: Permission,
    patient_id: str,
    document: DocumentFacts | None = None,
) -> Decision:
    principal = actor.principal
    resource, interaction = SCOPE_NEEDED[permission]
    if not scopes_allow(principal.scopes, resource, interaction):
        return _deny("scope")
    if document is not None and document.patient_id != patient_id:
        return _deny("document belongs to another patient")
    if principal.role is Role.PATIENT:
        return _decide_patient(actor, permission, patient_id, document)
    if principal.role in (Role.PROFESSIONAL, Role.SOFTWARE):
        return _decide_professional(actor, permission, document)
    return _deny("no rule grants this role access")


def _decide_patient(
    actor: Actor, permission: Permission, patient_id: str, document: DocumentFacts | None
) -> Decision:
    purpose = Purpose.PATIENT_REQUEST
    if actor.own_patient_id is None or actor.own_patient_id != patient_id:
        return _deny("not the patient's own record", purpose)
    if document is None:
        return _allow("own record", purpose)
    if INVISIBLE_PATIENT in document.security_labels and not _is_author(actor, document):
        return _deny("invisible to the patient until announced", purpose)
    # Patients manage what they uploaded; professionals' documents change only through
    # their authors (masking is a policy change, issue #4).
    changing = permission in (Permission.DOCUMENT_UPDATE, Permission.DOCUMENT_DELETE)
    if changing and not _is_author(actor, document):
        return _deny("patients change only the documents they uploaded", purpose)
    return _allow("own record", purpose)


def _decide_professional(
    actor: Actor, permission: Permission, document: DocumentFacts | None
) -> Decision:
    professional = actor.principal.acting_professional
    if professional is None:
        return _deny("no acting professional")
    if permission in (Permission.DOCUMENT_CREATE, Permission.PATIENT_CREATE):
        # Feeding a record is open to every authenticated professional (CONTRACT.md).
        return _allow("feeding the record", Purpose.TREATMENT)
    if permission is Permission.DOCUMENT_SEARCH and document is None:
        # The search itself is allowed; each result is decided on its own.
        return _allow("search, results filtered", Purpose.TREATMENT)
    if document is not None and _is_author(actor, document):
        return _allow("author", Purpose.TREATMENT)
    return _deny("no care relationship")


def author_of(actor: Actor) -> tuple[str, str]:
    """How a document this actor writes records its author: patients by record id (never
    their INS, which must not sit in clear), professionals by IDNPS."""
    if actor.principal.role is Role.PATIENT and actor.own_patient_id is not None:
        return "patient", actor.own_patient_id
    professional = actor.principal.acting_professional
    if professional is not None:
        return "professional", professional
    return actor.principal.role.value, actor.principal.subject


def _is_author(actor: Actor, document: DocumentFacts) -> bool:
    return (document.author_kind, document.author_id) == author_of(actor)
