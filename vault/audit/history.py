"""A patient's access history, as they (or whoever the access rules let) may read it.

Reading it is itself an access: it goes through ``AccessService.authorize`` with
``Permission.AUDIT_READ`` and leaves its own entry. Entries about a document the reader
may not see (a result hidden from the patient until announced, a document hidden from
legal representatives), whether they name the document, its content (Binary) or the
SubmissionSet (List) it came in, are left out: the access module decides, so the history
never reveals what the record hides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from vault.access.permissions import Permission
from vault.access.policy import Actor
from vault.access.principal import Role
from vault.access.scopes import Scope
from vault.access.service import AccessService
from vault.audit import repository
from vault.documents.repository import facts
from vault.errors import BadRequest, NotFound
from vault.models import AuditEntry, Patient


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
        if session.get(Patient, patient_id) is None:
            raise NotFound("Patient not found")
        self.access.authorize(
            session,
            actor,
            Permission.AUDIT_READ,
            patient_id,
            resource_type="AuditEvent",
            not_found_as="Patient",
        )
        before = parse_cursor(cursor)
        visible: list[AuditEntry] = []
        batch = count + 1
        while len(visible) <= count:
            rows = repository.patient_entries(
                session,
                patient_id,
                before,
                batch,
                roles=only.roles if only else (),
                since=only.since if only else None,
                until=only.until if only else None,
            )
            visible.extend(self._visible(session, actor, patient_id, rows))
            if len(rows) < batch:
                break
            before = rows[-1].id
            batch = min(batch * 2, 1000)
        shown = visible[:count]
        more = len(visible) > count
        return HistoryPage(shown, str(shown[-1].id) if more and shown else None)

    def entry(self, session: Session, actor: Actor, patient_id: str, entry_id: int) -> AuditEntry:
        """One entry of the patient's history (for its receipt), as ``page`` shows it."""
        if session.get(Patient, patient_id) is None:
            raise NotFound("Patient not found")
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
            session, {d for d in map(document_of, rows) if d is not None}
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
