"""Which audit entries a patient must hear about, and the outbox row each one leaves.

The rule is a pure function of the entry, applied by ``AuditService.append`` in the same
transaction: the notification exists exactly when the access it reports happened.

| kind                 | when (successful entries about a patient, by someone else)       | once per                      |
|----------------------|------------------------------------------------------------------|-------------------------------|
| `emergency-access`   | purpose of use ETREAT (bris de glace, SAMU)                      | actor and day                 |
| `delegation-used`    | a caregiver acted under a delegation                             | caregiver and day             |
| `delegation-granted` | a `delegation:*` permission created something                    | entry                         |
| `new-document`       | a document was added to the record                               | entry                         |
| `new-reader`         | a professional (or software for one) read or searched documents  | professional, ever            |

An emergency access is reported as such, not also as a new reader. A new document hidden
from the patient until its result is announced is held back by the delivery worker until
then (``vault/audit/delivery.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vault.models import AuditEntry, AuditNotification

EMERGENCY_PURPOSE = "ETREAT"
READ_PERMISSIONS = frozenset({"document:read", "document:search", "document:content"})
PROFESSIONAL_ROLES = frozenset({"professional", "software"})


class NotificationKind(StrEnum):
    EMERGENCY_ACCESS = "emergency-access"
    DELEGATION_USED = "delegation-used"
    DELEGATION_GRANTED = "delegation-granted"
    NEW_DOCUMENT = "new-document"
    NEW_READER = "new-reader"


def acting_person(entry: AuditEntry) -> str | None:
    """Whose act it is: the professional software acts for, otherwise the caller."""
    if entry.actor_role == "software":
        return entry.on_behalf_of
    return entry.actor_id


def _day(entry: AuditEntry) -> str:
    return entry.occurred_at.date().isoformat()


def _permission(entry: AuditEntry) -> str:
    return str(entry.detail.get("permission", ""))


Rule = tuple[Callable[[AuditEntry], bool], NotificationKind, Callable[[AuditEntry], str]]

# First match wins: an emergency read is reported as an emergency, not as a new reader.
RULES: tuple[Rule, ...] = (
    (
        lambda e: e.purpose == EMERGENCY_PURPOSE,
        NotificationKind.EMERGENCY_ACCESS,
        lambda e: f"emergency:{acting_person(e)}:{_day(e)}",
    ),
    (
        lambda e: e.actor_role == "caregiver",
        NotificationKind.DELEGATION_USED,
        lambda e: f"delegation-used:{acting_person(e)}:{_day(e)}",
    ),
    (
        lambda e: _permission(e).startswith("delegation:") and e.action == "C",
        NotificationKind.DELEGATION_GRANTED,
        lambda e: f"delegation-granted:{e.id}",
    ),
    (
        lambda e: _permission(e) == "document:create",
        NotificationKind.NEW_DOCUMENT,
        lambda e: f"document:{e.id}",
    ),
    (
        lambda e: _permission(e) in READ_PERMISSIONS and e.actor_role in PROFESSIONAL_ROLES,
        NotificationKind.NEW_READER,
        lambda e: f"reader:{acting_person(e)}",
    ),
)


def notification_for(entry: AuditEntry) -> tuple[NotificationKind, str] | None:
    """The notification an entry calls for, with the key that makes it happen once."""
    if entry.outcome != "success" or entry.patient_id is None:
        return None
    if entry.actor_role == "patient" and entry.actor_id == entry.patient_id:
        return None
    for applies, kind, dedupe_key in RULES:
        if applies(entry):
            return kind, dedupe_key(entry)
    return None


def enqueue(session: Session, entry: AuditEntry) -> None:
    """Add the entry's notification to the outbox, unless one with its key exists."""
    wanted = notification_for(entry)
    if wanted is None or entry.patient_id is None:
        return
    kind, dedupe_key = wanted
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(AuditNotification)
        .values(
            created_at=entry.occurred_at,
            patient_id=entry.patient_id,
            kind=kind.value,
            dedupe_key=dedupe_key,
            audit_entry_id=entry.id,
            actor_role=entry.actor_role,
            actor_id=acting_person(entry),
            status="pending",
            attempts=0,
            next_attempt_at=entry.occurred_at,
        )
        .on_conflict_do_nothing(index_elements=["patient_id", "dedupe_key"])
    )
