"""A patient's access history, as they (or whoever the access rules let) may read it.

Reading it is itself an access: it goes through ``AccessService.authorize`` with
``Permission.AUDIT_READ`` and leaves its own entry. Entries about a document the reader
may not see (a result hidden from the patient until announced, a document hidden from
legal representatives), whether they name the document, its content (Binary) or the
SubmissionSet (List) it came in, are left out: the access module decides, so the history
never reveals what the record hides.

Refusals must not drown it: one actor's refusals on one page are shown as one entry (the
newest), with their count and the time they span, so a prober's afternoon is one line and
the patient's own history stays in view. The log itself keeps every one of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime

from vault.access.permissions import Permission
from vault.access.policy import Actor
from vault.access.service import AccessService
from vault.audit import repository
from vault.db import Session
from vault.documents.repository import facts
from vault.errors import BadRequest, NotFound
from vault.identity.principal import Role
from vault.identity.scopes import Scope
from vault.models import AuditEntry

# Rows read for one page at most: a page of a history that is mostly one actor's refusals
# folds them until this many, then offers the rest on the next page.
MAX_SCANNED = 5000


@dataclass
class RefusalGroup:
    """An actor's refusals shown as one entry: ``count`` of them, the newest shown, the
    oldest at ``earliest``."""

    count: int
    earliest: datetime


@dataclass(frozen=True)
class HistoryFilter:
    """Which entries a reader asks for: some actors' roles, a period [since, until)."""

    roles: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class HistoryPage:
    entries: list[AuditEntry]
    next_cursor: str | None
    # By the id of the entry shown for them, the refusals grouped under it (two or more).
    refusals: dict[int, RefusalGroup] = field(default_factory=dict)


def _refusing_actor(entry: AuditEntry) -> tuple[str | None, ...] | None:
    """Whose refusal this entry is, for grouping; None when it is not a refusal."""
    if entry.outcome != "denied":
        return None
    return (entry.actor_role, entry.actor_id, entry.on_behalf_of, entry.client_id)


def parse_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    # isdigit alone admits "²"; ids are 64-bit.
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise BadRequest("Invalid _cursor", expression="_cursor")
    return int(cursor)


def document_of(entry: AuditEntry) -> str | None:
    """The document an entry is about, whatever it names: a DocumentReference (a read,
    a version read, a change), or a Binary or SubmissionSet List read for that document
    (their entries carry it in ``detail``). A search names no document, only the record."""
    document = entry.detail.get("document")
    if document:
        return str(document)
    if entry.resource_type == "DocumentReference":
        return entry.resource_id
    return None


class AuditHistory:
    def __init__(self, access: AccessService) -> None:
        self.access = access

    def page(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        count: int,
        cursor: str | None,
        only: HistoryFilter | None = None,
    ) -> HistoryPage:
        if not repository.patient_exists(session, patient_id):
            raise self.access.refuse_unknown(
                session,
                actor,
                Permission.AUDIT_READ,
                resource_type="AuditEvent",
                not_found_as="Patient",
            )
        self.access.authorize(
            session,
            actor,
            Permission.AUDIT_READ,
            patient_id,
            resource_type="AuditEvent",
            not_found_as="Patient",
        )
        before = parse_cursor(cursor)
        shown: list[AuditEntry] = []
        groups: dict[tuple[str | None, ...], tuple[AuditEntry, RefusalGroup]] = {}
        # The last entry this page took in, shown or folded into a group: the next page
        # starts below it.
        last_taken: int | None = None
        scanned = 0
        batch = count + 1
        while True:
            rows = repository.patient_entries(
                session,
                patient_id,
                before,
                batch,
                roles=only.roles if only else (),
                since=only.since if only else None,
                until=only.until if only else None,
            )
            scanned += len(rows)
            for entry in self._visible(session, actor, patient_id, rows):
                refusing = _refusing_actor(entry)
                if refusing is not None and refusing in groups:
                    group = groups[refusing][1]
                    group.count += 1
                    group.earliest = entry.occurred_at
                elif len(shown) == count:
                    return self._page(shown, groups, last_taken)
                else:
                    shown.append(entry)
                    if refusing is not None:
                        groups[refusing] = (entry, RefusalGroup(1, entry.occurred_at))
                last_taken = entry.id
            if len(rows) < batch:
                return self._page(shown, groups, None)
            before = rows[-1].id
            if scanned >= MAX_SCANNED:
                # Everything up to here is folded; the rest waits for the next page.
                return self._page(shown, groups, before)
            batch = min(batch * 2, 1000)

    @staticmethod
    def _page(
        shown: list[AuditEntry],
        groups: dict[tuple[str | None, ...], tuple[AuditEntry, RefusalGroup]],
        next_before: int | None,
    ) -> HistoryPage:
        refusals = {entry.id: group for entry, group in groups.values() if group.count > 1}
        return HistoryPage(shown, str(next_before) if next_before else None, refusals)

    def entry(self, session: Session, actor: Actor, patient_id: str, entry_id: int) -> AuditEntry:
        """One entry of the patient's history (for its receipt), as ``page`` shows it."""
        if not repository.patient_exists(session, patient_id):
            raise self.access.refuse_unknown(
                session,
                actor,
                Permission.AUDIT_READ,
                resource_type="AuditEvent",
                not_found_as="Patient",
            )
        self.access.authorize(
            session,
            actor,
            Permission.AUDIT_READ,
            patient_id,
            resource_type="AuditEvent",
            resource_id=str(entry_id),
            not_found_as="Patient",
        )
        row = session.get(AuditEntry, entry_id)
        if row is None or row.patient_id != patient_id:
            raise NotFound("AuditEvent not found")
        if not self._visible(session, actor, patient_id, [row]):
            raise NotFound("AuditEvent not found")
        return row

    def _visible(
        self, session: Session, actor: Actor, patient_id: str, rows: list[AuditEntry]
    ) -> list[AuditEntry]:
        documents = repository.documents_by_id(
            session,
            {
                (row.patient_id, document_id)
                for row in rows
                if row.patient_id is not None and (document_id := document_of(row)) is not None
            },
        )
        reader = _as_document_reader(actor)
        shown = []
        for entry in rows:
            document_id = document_of(entry)
            document = documents.get(document_id) if document_id else None
            if document is not None and not self.access.check(
                reader, Permission.DOCUMENT_READ, patient_id, facts(document)
            ):
                continue
            shown.append(entry)
        return shown


def _as_document_reader(actor: Actor) -> Actor:
    """The question here is whether a document's existence may be shown to this person,
    not whether this token may fetch it: a patient's app holding only AuditEvent scopes
    must still see who read their documents."""
    context = "patient" if actor.principal.role in (Role.PATIENT, Role.CAREGIVER) else "user"
    scope = Scope(context, "DocumentReference", frozenset({"r"}))
    principal = dataclasses.replace(actor.principal, scopes=(*actor.principal.scopes, scope))
    return dataclasses.replace(actor, principal=principal)
