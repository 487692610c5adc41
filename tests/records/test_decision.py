"""The closed-record rule in the decision function: every permission but the record's
lifetime ones refused to everyone; a write the rules would allow refused as "closed" (409),
any other refusal left as it was (404)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vault.access.permissions import Permission
from vault.access.policy import LIFECYCLE, Actor, DocumentFacts, decide
from vault.access.state import Entry, EntryKind, PatientPolicy
from vault.identity.principal import Principal, Role
from vault.identity.scopes import DEFAULT_SCOPES, parse_scopes

NOW = datetime(2026, 12, 7, tzinfo=UTC)
PATIENT = "patient-1"
DOCTOR = "810000000001"


def _principal(role: Role, subject: str) -> Principal:
    profession = "10" if role is Role.PROFESSIONAL else None
    return Principal(
        role=role,
        subject=subject,
        scopes=parse_scopes(DEFAULT_SCOPES[role.value]),
        profession=profession,
    )


def _policy(*, closed: bool, blocked: bool = False) -> PatientPolicy:
    kind = EntryKind.BLOCK if blocked else EntryKind.TREATING_DOCTOR
    entry = Entry("entry-1", kind, DOCTOR, NOW - timedelta(days=1))
    return PatientPolicy(PATIENT, NOW, 1, (entry,), closed=closed)


PATIENT_ACTOR = Actor(
    _principal(Role.PATIENT, "185077512345653"), own_patient_id=PATIENT, own_record_closed=True
)
DOCUMENT = DocumentFacts(
    PATIENT,
    "professional",
    "810000000009",
    frozenset(),
    "current",
    type_code="http://loinc.org|11502-2",
)


@pytest.mark.parametrize("permission", sorted(Permission, key=str))
def test_the_patient_may_ask_only_about_the_records_lifetime_once_closed(permission):
    document = DOCUMENT if permission.value.startswith("document:") else None

    decision = decide(PATIENT_ACTOR, permission, PATIENT, document)

    if permission in LIFECYCLE:
        assert decision.allowed
    else:
        assert not decision.allowed
        assert decision.closed == (
            permission in (Permission.DOCUMENT_CREATE, Permission.PATIENT_CREATE)
        )


def test_a_treating_doctor_reads_nothing_and_is_told_why_a_push_is_refused():
    doctor = Actor(_principal(Role.PROFESSIONAL, DOCTOR))
    closed, opened = _policy(closed=True), _policy(closed=False)

    assert decide(doctor, Permission.DOCUMENT_READ, PATIENT, DOCUMENT, policy=opened).allowed
    read = decide(doctor, Permission.DOCUMENT_READ, PATIENT, DOCUMENT, policy=closed)
    push = decide(doctor, Permission.DOCUMENT_CREATE, PATIENT, DOCUMENT, policy=closed)
    create = decide(doctor, Permission.PATIENT_CREATE, PATIENT, policy=closed)
    closing = decide(doctor, Permission.RECORD_CLOSE, PATIENT, policy=closed)

    assert (read.allowed, read.closed) == (False, False)
    assert read.reason == "the patient's space is closed"
    assert (push.allowed, push.closed) == (False, True)
    assert (create.allowed, create.closed) == (False, True)
    assert not closing.allowed


def test_a_blocked_professional_learns_nothing_of_the_closure():
    doctor = Actor(_principal(Role.PROFESSIONAL, DOCTOR))

    push = decide(
        doctor,
        Permission.DOCUMENT_CREATE,
        PATIENT,
        DOCUMENT,
        policy=_policy(closed=True, blocked=True),
    )

    assert (push.allowed, push.closed) == (False, False)
    assert push.reason == "blocked by the patient"
