"""Which audit entries a patient must hear about, and the outbox row each one leaves.

The rule is a pure function of the entry, applied by ``AuditService.append`` in the same
transaction (in the very statement that writes the entry, on PostgreSQL): the notification
exists exactly when the access it reports happened.

| kind                 | when (successful entries about a patient, by someone else)       | once per                      |
|----------------------|------------------------------------------------------------------|-------------------------------|
| `emergency-access`   | purpose of use ETREAT (bris de glace, SAMU)                      | actor and day                 |
| `delegation-used`    | a caregiver acted under a delegation                             | caregiver and day             |
| `delegation-granted` | a `delegation:*` permission created something                    | entry                         |
| `new-document`       | a document was added to the record                               | entry                         |
| `new-reader`         | a professional (or software for one) read or searched documents  | professional, ever            |
| `representative-registered` | a legal representative of an adult was registered (to the patient; the existing representatives are told by the policy service, one row each, addressed to their representation) | entry |
| `point-of-care-declared` | a professional declared the patient's consent at the point of care | entry |
| `invitation-accepted` | a caregiver accepted the patient's invitation: the delegation now names them | entry |
| `export-ready`       | the export worker built an export of the record                  | export                        |
| `space-closed`       | the vault archived a record its patient (or representative) closed | entry                       |
| `space-deleted`      | the purge crypto-shredded the record (early deletion or retention's end) | entry                 |

An emergency access is reported as such, not also as a new reader. A new document hidden
from the patient until its result is announced is held back by the delivery worker until
then (``vault/audit/delivery.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

# The statement that writes a row of outbox_row or addressed_rows is SQL, so it lives in
# the repository; vault/access/journal.py builds its statements from this name.
from vault.access.repository import outbox_insert as outbox_insert  # noqa: PLC0414

EMERGENCY_PURPOSE = "ETREAT"
READ_PERMISSIONS = frozenset({"document:read", "document:search", "document:content"})
PROFESSIONAL_ROLES = frozenset({"professional", "software"})


class EntryFacts(Protocol):
    """What the rules read of an entry: a stored ``EntryFacts`` or the ``WrittenEntry``
    that ``AuditService.append`` wrote."""

    @property
    def id(self) -> int: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def patient_id(self) -> str | None: ...
    @property
    def action(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def actor_role(self) -> str: ...
    @property
    def actor_id(self) -> str | None: ...
    @property
    def on_behalf_of(self) -> str | None: ...
    @property
    def detail(self) -> Mapping[str, Any]: ...


class NotificationKind(StrEnum):
    EMERGENCY_ACCESS = "emergency-access"
    DELEGATION_USED = "delegation-used"
    DELEGATION_GRANTED = "delegation-granted"
    NEW_DOCUMENT = "new-document"
    NEW_READER = "new-reader"
    REPRESENTATIVE_REGISTERED = "representative-registered"
    POINT_OF_CARE_DECLARED = "point-of-care-declared"
    INVITATION_ACCEPTED = "invitation-accepted"
    EXPORT_READY = "export-ready"
    SPACE_CLOSED = "space-closed"
    SPACE_DELETED = "space-deleted"


def acting_person(entry: EntryFacts) -> str | None:
    """Whose act it is: the professional software acts for, otherwise the caller."""
    if entry.actor_role == "software":
        return entry.on_behalf_of
    return entry.actor_id


def _day(entry: EntryFacts) -> str:
    return entry.occurred_at.date().isoformat()


def _permission(entry: EntryFacts) -> str:
    return str(entry.detail.get("permission", ""))


def _adds(entry: EntryFacts, kind: str) -> bool:
    return entry.detail.get("policy") == kind and entry.detail.get("change") == "add"


Rule = tuple[Callable[[EntryFacts], bool], NotificationKind, Callable[[EntryFacts], str]]

# First match wins: an emergency read is reported as an emergency, not as a new reader.
RULES: tuple[Rule, ...] = (
    (
        lambda e: e.purpose == EMERGENCY_PURPOSE,
        NotificationKind.EMERGENCY_ACCESS,
        lambda e: f"emergency:{acting_person(e)}:{_day(e)}",
    ),
    (
        lambda e: _permission(e) == "invitation:accept",
        NotificationKind.INVITATION_ACCEPTED,
        lambda e: f"invitation-accepted:{e.id}",
    ),
    (
        lambda e: e.actor_role == "caregiver",
        NotificationKind.DELEGATION_USED,
        lambda e: f"delegation-used:{acting_person(e)}:{_day(e)}",
    ),
    (
        # A minor is not told: their representatives are (see PolicyService).
        lambda e: _adds(e, "legal-representative") and e.detail.get("ground") != "minor",
        NotificationKind.REPRESENTATIVE_REGISTERED,
        lambda e: f"representative:{e.id}",
    ),
    (
        lambda e: _adds(e, "point-of-care"),
        NotificationKind.POINT_OF_CARE_DECLARED,
        lambda e: f"point-of-care:{e.id}",
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
    (
        lambda e: _permission(e) == "record:export" and e.detail.get("stage") == "built",
        NotificationKind.EXPORT_READY,
        lambda e: f"export:{e.detail.get('export')}",
    ),
    (
        lambda e: _permission(e) == "record:close" and e.detail.get("stage") == "archived",
        NotificationKind.SPACE_CLOSED,
        lambda e: f"space-closed:{e.id}",
    ),
    (
        lambda e: _permission(e) == "record:delete" and e.detail.get("stage") == "deleted",
        NotificationKind.SPACE_DELETED,
        lambda e: f"space-deleted:{e.id}",
    ),
)


def notification_for(entry: EntryFacts) -> tuple[NotificationKind, str] | None:
    """The notification an entry calls for, with the key that makes it happen once."""
    if entry.outcome != "success" or entry.patient_id is None:
        return None
    if entry.actor_role == "patient" and entry.actor_id == entry.patient_id:
        return None
    for applies, kind, dedupe_key in RULES:
        if applies(entry):
            return kind, dedupe_key(entry)
    return None


def outbox_row(entry: EntryFacts) -> dict[str, Any] | None:
    """The parameters of the entry's outbox row for ``outbox_insert``, or None when the
    entry calls for no notification."""
    wanted = notification_for(entry)
    if wanted is None or entry.patient_id is None:
        return None
    kind, dedupe_key = wanted
    return _row(entry, entry.patient_id, kind, dedupe_key, None)


def addressed_rows(
    entry: EntryFacts, kind: NotificationKind, recipients: list[str]
) -> list[dict[str, Any]]:
    """Outbox rows about this entry addressed to others than the patient: each recipient
    is a representation's entry id, which the receiving service maps to that
    representative (never an identifier of theirs in the vault's messages)."""
    if entry.patient_id is None:
        return []
    return [
        _row(entry, entry.patient_id, kind, f"{kind.value}:{entry.id}:{recipient}", recipient)
        for recipient in recipients
    ]


def _row(
    entry: EntryFacts,
    patient_id: str,
    kind: NotificationKind,
    dedupe_key: str,
    recipient: str | None,
) -> dict[str, Any]:
    values = {
        "created_at": entry.occurred_at,
        "patient_id": patient_id,
        "kind": kind.value,
        "dedupe_key": dedupe_key,
        "audit_entry_id": entry.id,
        "actor_role": entry.actor_role,
        "actor_id": acting_person(entry),
        "recipient": recipient,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": entry.occurred_at,
    }
    return {f"n_{name}": value for name, value in values.items()}
