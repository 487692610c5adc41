"""What the patient's space's pages need from the domain, through the domain's services.

No HTTP framework here and no SQL of documents: every document, policy and history read
goes through the services, which decide it with ``AccessService.authorize`` and record it
in the request's transaction, as the API's do. This module shapes what they return for
people: French labels, display names, what may be done with each thing.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import nh3

from vault.access.permissions import Permission
from vault.access.policy import Actor, DocumentFacts
from vault.access.state import (
    ALL_CATEGORIES,
    MASKED,
    DelegationScope,
    EntryKind,
    MetadataChange,
)
from vault.audit import merkle
from vault.audit import repository as audit_repository
from vault.audit.checkpoints import checkpoint_json
from vault.audit.export import export_record
from vault.audit.history import HistoryFilter, document_of
from vault.db import Session
from vault.documents import repository as documents_repository
from vault.documents.repository import SearchCriteria
from vault.documents.search import ListedDocument
from vault.errors import Conflict, Gone, InvalidResource, NotFound, TooManyRequests, VaultError
from vault.exports.service import IN_PROGRESS, Download, ExportNotReady
from vault.identity.principal import INS_NIR_SYSTEM, Principal, Role
from vault.models import AccessPolicyEntry, AuditEntry, RecordExport, WebVisitor
from vault.models.base import as_utc, utcnow
from vault.notifications import repository as notifications_repository
from vault.notifications import templates as email_templates
from vault.policies.management import PolicyView
from vault.services import Services
from vault.web.i18n import TIMEZONE, file_size, gettext, short_date
from vault.web.terminology import terminology

PAGE_SIZE = 20
HISTORY_PAGE_SIZE = 25
INLINE_LIMIT = 2 * 1024 * 1024
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
FHIR_TYPES = frozenset({"application/fhir+json", "application/json"})
# The audit roles a history can be narrowed to, as the filter offers them.
HISTORY_ROLES = (
    "patient",
    "professional",
    "caregiver",
    "legal-representative",
    "software",
    "operator",
)
# Narrative HTML from a FHIR document: what nh3 keeps of it (no style, no links out).
NARRATIVE_TAGS = frozenset(
    {
        "p", "br", "b", "strong", "i", "em", "u", "sub", "sup", "ul", "ol", "li", "table",
        "thead", "tbody", "tr", "th", "td", "caption", "h3", "h4", "h5", "h6", "span", "div",
        "pre", "code", "blockquote", "dl", "dt", "dd",
    }
)  # fmt: skip


class FormErrors(InvalidResource):
    """What is wrong with a submitted form, by field, in French. A VaultError, so that the
    request's transaction rolls back whatever the attempt wrote; the page that shows the
    form again is set by the route (``template`` and ``context``)."""

    def __init__(self, errors: dict[str, str], *, status_code: int = 422) -> None:
        super().__init__("The form has errors")
        self.errors = errors
        self.status_code = status_code
        self.template: str | None = None
        self.context: dict[str, Any] = {}


@dataclass(frozen=True)
class DocumentRow:
    id: str
    title: str
    type_label: str
    category_label: str
    date: datetime
    author: str
    origin: str
    content_type: str
    binary_id: str | None
    new: bool
    masked: bool
    may_delete: bool
    may_mask: bool


@dataclass(frozen=True)
class DocumentsPage:
    rows: list[DocumentRow]
    next_cursor: str | None
    categories: list[tuple[str, str]]


@dataclass(frozen=True)
class Viewer:
    """How a document is shown: kind is pdf, image, text, fhir or download."""

    kind: str
    text: str | None = None
    sections: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class HistoryRow:
    id: int
    at: datetime
    who: str
    role: str
    on_behalf_of: str | None
    action: str
    document: str | None
    outcome: str
    emergency: bool


@dataclass(frozen=True)
class PersonRow:
    """An entry of the policy naming someone, as the access page lists it."""

    id: str
    kind: str
    who: str
    since: datetime
    until: datetime | None
    reason: str | None = None
    scope: str | None = None
    categories: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class Relationship:
    """A record the signed-in person acts on, and on what terms."""

    patient_id: str
    name: str
    kind: str
    may_add: bool
    until: datetime | None
    entry_id: str | None
    categories: str


class PageRefused(VaultError):
    """A refusal the person reads on an error page, in French, with the status the API
    would answer."""

    def __init__(self, text: str, status_code: int) -> None:
        super().__init__("Refused")
        self.text = text
        self.status_code = status_code


@dataclass(frozen=True)
class ExportRow:
    """One of the person's exports, as the export page shows it: status is queued,
    building, ready, failed or expired."""

    id: str
    status: str
    progress: int
    requested_at: datetime
    expires_at: datetime | None
    documents: int
    size: str

    @property
    def in_progress(self) -> bool:
        return self.status in IN_PROGRESS


@dataclass(frozen=True)
class EmailPreferences:
    address: str | None
    confirmed: bool
    events: list[tuple[str, str, bool]]


@dataclass(frozen=True)
class NotificationRow:
    id: int
    at: datetime
    kind: str
    text: str
    unread: bool


def professional_label(idnps: str | None) -> str:
    if not idnps:
        return gettext("who.unknown")
    if len(idnps) == 12 and idnps.startswith("8") and idnps.isdigit():
        return gettext("who.rpps", number=idnps[1:])
    return gettext("who.idnps", number=idnps)


def normalise_rpps(text: str) -> str:
    """What a patient types to name a professional: an 11-digit RPPS number or a
    12-digit IDNPS (8 + RPPS), spaces allowed; refused otherwise, in French."""
    value = "".join(text.split())
    if len(value) == 11 and value.isdigit():
        return "8" + value
    if len(value) == 12 and value.isdigit() and value.startswith("8"):
        return value
    raise FormErrors({"professional": gettext("error.rpps")})


def _binary_id(resource: dict[str, Any]) -> str | None:
    url = ((resource.get("content") or [{}])[0].get("attachment") or {}).get("url") or ""
    return url.removeprefix("Binary/") if url.startswith("Binary/") else None


def _attachment(resource: dict[str, Any]) -> dict[str, Any]:
    content = resource.get("content") or [{}]
    attachment = content[0].get("attachment") if isinstance(content[0], dict) else None
    return attachment if isinstance(attachment, dict) else {}


def _author_name(resource: dict[str, Any]) -> str | None:
    contained = {
        f"#{item.get('id')}": item
        for item in resource.get("contained") or []
        if isinstance(item, dict) and item.get("id")
    }
    for author in resource.get("author") or []:
        if not isinstance(author, dict):
            continue
        if isinstance(author.get("display"), str) and author["display"].strip():
            return str(author["display"]).strip()
        target = contained.get(str(author.get("reference") or ""))
        for name in (target or {}).get("name") or []:
            if isinstance(name, dict):
                text = name.get("text") or " ".join(
                    [
                        *(name.get("prefix") or []),
                        *(name.get("given") or []),
                        name.get("family") or "",
                    ]
                )
                if str(text).strip():
                    return str(text).strip()
    return None


class Space:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.terms = terminology()

    # -- who is here ------------------------------------------------------------------

    def actor(self, session: Session, principal: Principal) -> Actor:
        return self.services.access.actor(session, principal)

    def visitor_key(self, principal: Principal) -> str:
        identity = f"{principal.issuer or ''}|{principal.role.value}|{principal.subject}"
        return self.services.key_provider.blind_index("web-visitor", identity.encode()).hex()

    def visit(self, session: Session, principal: Principal) -> datetime | None:
        """Record a sign-in; returns the one before, to mark what is new since."""
        key = self.visitor_key(principal)
        now = utcnow()
        row = session.get(WebVisitor, key)
        if row is None:
            session.add(WebVisitor(key=key, last_visit_at=now))
            session.flush()
            return None
        previous = row.last_visit_at
        row.previous_visit_at = previous
        row.last_visit_at = now
        session.flush()
        return previous

    def open_record(
        self, session: Session, actor: Actor, principal: Principal, name: str | None
    ) -> str:
        """A patient's first step: their record, created from who signed in."""
        given, _, family = (name or "").strip().rpartition(" ")
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": INS_NIR_SYSTEM, "value": principal.subject}],
        }
        if family:
            resource["name"] = [{"family": family, **({"given": [given]} if given else {})}]
        patient, _created = self.services.patients.ensure(
            session, actor, resource, expression="Patient"
        )
        return patient.id

    def relationships(self, session: Session, actor: Actor) -> list[Relationship]:
        """Every record the person acts for, each with its patient's name (a Patient read
        recorded in that patient's history)."""
        rows = self.services.policies.relationships_of(session, actor)
        return [self._relationship(session, actor, row) for row in rows]

    def relationship(self, session: Session, actor: Actor, patient_id: str) -> Relationship | None:
        """The terms on which the person acts for this one record: only its patient's name
        is read, so that a page of one record leaves nothing in the others' histories."""
        for row in self.services.policies.relationships_of(session, actor):
            if row.patient_id == patient_id:
                return self._relationship(session, actor, row)
        return None

    def _relationship(self, session: Session, actor: Actor, row: AccessPolicyEntry) -> Relationship:
        return Relationship(
            patient_id=row.patient_id,
            name=self.patient_name(session, actor, row.patient_id),
            kind=row.kind,
            may_add=row.kind == EntryKind.REPRESENTATIVE
            or row.scope == DelegationScope.READ_UPLOAD,
            until=row.expires_at,
            entry_id=row.id if row.kind == EntryKind.DELEGATION else None,
            categories=self.categories_label(row.categories),
        )

    def patient_name(self, session: Session, actor: Actor, patient_id: str) -> str:
        """The record's name, read (and recorded) as a Patient read."""
        try:
            resource = self.services.patients.read(session, actor, patient_id)
        except NotFound:
            return gettext("who.patient")
        for name in resource.get("name") or []:
            if isinstance(name, dict):
                text = " ".join([*(name.get("given") or []), name.get("family") or ""]).strip()
                if text:
                    return text
        return gettext("who.patient")

    def categories_label(self, categories: Sequence[str]) -> str:
        if not categories or ALL_CATEGORIES in categories:
            return gettext("categories.all")
        return ", ".join(self.terms.category(code) or code for code in categories)

    # -- documents --------------------------------------------------------------------

    def documents(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        *,
        category: str | None,
        cursor: str | None,
        since: datetime | None,
        count: int = PAGE_SIZE,
        masked_only: bool = False,
    ) -> DocumentsPage:
        criteria = SearchCriteria(
            patient_id=patient_id,
            category_codes=(category,) if category in self.terms.categories else (),
            security_labels=(MASKED,) if masked_only else (),
        )
        page = self.services.search.by_date(session, actor, criteria, count, cursor)
        rows = [self._row(actor, listed, since) for listed in page.documents]
        categories = sorted(self.terms.categories.items(), key=lambda item: item[1])
        return DocumentsPage(rows, page.next_cursor, categories)

    def _row(self, actor: Actor, listed: ListedDocument, since: datetime | None) -> DocumentRow:
        resource = listed.resource
        facts = listed.facts
        attachment = _attachment(resource)
        type_label = self.terms.type(facts.type_code) or gettext("document.type.other")
        title = str(attachment.get("title") or resource.get("description") or type_label)
        return DocumentRow(
            id=listed.id,
            title=title,
            type_label=type_label,
            category_label=self.terms.category(facts.category_code) or "",
            date=listed.sort_at,
            author=self._author(actor, resource, facts),
            origin=self._origin(actor, facts),
            content_type=str(attachment.get("contentType") or ""),
            binary_id=_binary_id(resource),
            new=since is not None and listed.created_at > since,
            masked=MASKED in facts.security_labels,
            may_delete=bool(
                self.services.access.check(
                    actor, Permission.DOCUMENT_DELETE, facts.patient_id, facts
                )
            ),
            may_mask=self._may_toggle_mask(actor, facts),
        )

    def _may_toggle_mask(self, actor: Actor, facts: DocumentFacts) -> bool:
        """Whether the policy lets this person mask (or unmask) the document: the patient
        and their legal representatives, not a caregiver."""
        masked = MASKED in facts.security_labels
        change = MetadataChange(
            labels_added=frozenset() if masked else frozenset({MASKED}),
            labels_removed=frozenset({MASKED}) if masked else frozenset(),
        )
        decision = self.services.access.check(
            actor, Permission.DOCUMENT_UPDATE, facts.patient_id, facts, change=change
        )
        return bool(decision)

    def _author(self, actor: Actor, resource: dict[str, Any], facts: DocumentFacts) -> str:
        if facts.author_kind == "patient":
            if actor.own_patient_id == facts.author_id:
                return gettext("author.you")
            return gettext("author.patient")
        if facts.author_kind == "caregiver":
            if (
                actor.principal.role is Role.CAREGIVER
                and actor.principal.subject == facts.author_id
            ):
                return gettext("author.you")
            return gettext("author.caregiver")
        if facts.author_kind == "proxy":
            return gettext("author.representative")
        return _author_name(resource) or professional_label(facts.author_id)

    def _origin(self, actor: Actor, facts: DocumentFacts) -> str:
        return {
            "patient": gettext("origin.patient"),
            "caregiver": gettext("origin.caregiver"),
            "proxy": gettext("origin.representative"),
        }.get(facts.author_kind, gettext("origin.professional"))

    def document(
        self, session: Session, actor: Actor, patient_id: str, document_id: str
    ) -> DocumentRow:
        """One document's metadata: an audited read."""
        stored, resource = self.services.documents.read_with_row(session, actor, document_id)
        if stored.patient_id != patient_id:
            raise NotFound("DocumentReference not found")
        facts = documents_repository.facts(stored)
        sort_at = stored.date or stored.created_at
        listed = ListedDocument(stored.id, stored.created_at, sort_at, facts, resource)
        return self._row(actor, listed, None)

    def content(self, session: Session, actor: Actor, row: DocumentRow) -> tuple[str, bytes]:
        """The document's bytes: an audited content read."""
        if row.binary_id is None:
            raise NotFound("Binary not found")
        content = self.services.documents.content(session, actor, row.binary_id)
        return content.content_type, b"".join(content.chunks)

    def viewer(self, session: Session, actor: Actor, row: DocumentRow) -> Viewer:
        media = row.content_type.split(";", 1)[0].strip().lower()
        if media == "application/pdf":
            return Viewer("pdf")
        if media in IMAGE_TYPES:
            return Viewer("image")
        textual = media.startswith("text/") and media not in ("text/html", "text/xml")
        if not (textual or media in FHIR_TYPES):
            return Viewer("download")
        content_type, data = self.content(session, actor, row)
        if len(data) > INLINE_LIMIT:
            return Viewer("download")
        if textual:
            return Viewer("text", text=data.decode(_charset(content_type), errors="replace"))
        sections = fhir_sections(data)
        return Viewer("fhir", sections=sections) if sections else Viewer("download")

    def add(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        *,
        title: str,
        type_code: str,
        when: str,
        filename: str,
        content_type: str,
        data: bytes,
    ) -> str:
        errors: dict[str, str] = {}
        title = title.strip()
        if not title:
            errors["title"] = gettext("error.title.required")
        elif len(title) > 200:
            errors["title"] = gettext("error.title.long")
        if type_code not in self.terms.patient_types:
            errors["type"] = gettext("error.type")
        day: date | None = None
        if when:
            try:
                day = date.fromisoformat(when)
            except ValueError:
                errors["date"] = gettext("error.date")
            else:
                if day > datetime.now(TIMEZONE).date():
                    errors["date"] = gettext("error.date.future")
        if not data:
            errors["file"] = gettext("error.file.required" if not filename else "error.file.empty")
        elif len(data) > self.services.settings.max_body_bytes:
            errors["file"] = gettext("error.file.large")
        if errors:
            raise FormErrors(errors)
        moment = datetime.combine(day, time(12), tzinfo=UTC) if day else utcnow()
        resource = {
            "resourceType": "DocumentReference",
            "status": "current",
            "type": {
                "coding": [
                    {
                        "system": self.terms.type_system,
                        "code": type_code,
                        "display": self.terms.types.get(type_code, type_code),
                    }
                ]
            },
            "category": [
                {
                    "coding": [
                        {
                            "system": self.terms.category_system,
                            "code": self.terms.patient_category,
                        }
                    ]
                }
            ],
            "subject": {"reference": f"Patient/{patient_id}"},
            "date": moment.isoformat(),
            "content": [
                {
                    "attachment": {
                        "contentType": content_type or "application/octet-stream",
                        "title": title,
                        "data": base64.b64encode(data).decode(),
                    }
                }
            ],
        }
        try:
            stored = self.services.ingestion.publish(session, actor, resource)
        except InvalidResource as error:
            raise FormErrors({"file": gettext("error.file.refused")}) from error
        return stored.id

    def delete(self, session: Session, actor: Actor, document_id: str) -> None:
        self.services.documents.delete(session, actor, document_id)

    def mask(
        self, session: Session, actor: Actor, patient_id: str, document_id: str, *, masked: bool
    ) -> None:
        self.services.policies.set_mask(session, actor, patient_id, document_id, masked=masked)

    # -- who can see ------------------------------------------------------------------

    def policy(self, session: Session, actor: Actor, patient_id: str) -> PolicyView:
        return self.services.policies.view(session, actor, patient_id)

    def people(self, view: PolicyView, kind: EntryKind) -> list[PersonRow]:
        rows = []
        for entry in view.entries:
            if entry.kind != kind:
                continue
            rows.append(self._person(entry, view.reasons.get(entry.id)))
        return sorted(rows, key=lambda row: row.since, reverse=True)

    def _person(self, entry: AccessPolicyEntry, reason: str | None) -> PersonRow:
        kind = EntryKind(entry.kind)
        if kind is EntryKind.DELEGATION and (entry.subject or "").startswith("caregiver:"):
            who = (entry.subject or "").removeprefix("caregiver:")
        elif kind in (EntryKind.DELEGATION, EntryKind.REPRESENTATIVE):
            who = gettext("who.caregiver")
        else:
            who = professional_label(entry.subject)
        return PersonRow(
            id=entry.id,
            kind=entry.kind,
            who=who,
            since=entry.starts_at,
            until=entry.expires_at,
            reason=reason,
            scope=entry.scope,
            categories=self.categories_label(entry.categories) if entry.categories else None,
            subject=entry.subject,
        )

    def add_professional(
        self, session: Session, actor: Actor, patient_id: str, kind: EntryKind, text: str
    ) -> None:
        idnps = normalise_rpps(text)
        self.services.policies.add_professional(session, actor, patient_id, kind, idnps)

    def remove_professional(
        self, session: Session, actor: Actor, patient_id: str, kind: EntryKind, idnps: str | None
    ) -> None:
        self.services.policies.remove_professional(session, actor, patient_id, kind, idnps)

    def set_emergency(self, session: Session, actor: Actor, patient_id: str, *, on: bool) -> None:
        self.services.policies.set_emergency_refusal(session, actor, patient_id, refused=not on)

    # -- caregivers -------------------------------------------------------------------

    def delegations(
        self, session: Session, actor: Actor, patient_id: str
    ) -> tuple[list[PersonRow], list[PersonRow], list[PersonRow]]:
        """Active and past delegations, and invitations waiting (an audited policy read)."""
        view = self.services.policies.delegations(session, actor, patient_id)
        active: list[PersonRow] = []
        past: list[PersonRow] = []
        for held in view.delegations:
            row = self._person(held.entry, None)
            if held.display_name:
                row = dataclasses.replace(row, who=held.display_name)
            (active if held.in_force else past).append(row)
        waiting = [
            PersonRow(
                id=invitation.id,
                kind=EntryKind.DELEGATION.value,
                who=gettext("caregivers.invited"),
                since=invitation.created_at,
                until=invitation.delegation_expires_at,
                scope=invitation.scope,
                categories=self.categories_label(invitation.categories),
            )
            for invitation in view.invitations
        ]

        def newest(rows: list[PersonRow]) -> list[PersonRow]:
            return sorted(rows, key=lambda row: row.since, reverse=True)

        return newest(active), newest(past), newest(waiting)

    def invite(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        *,
        may_add: bool,
        categories: list[str],
        until: str,
    ) -> tuple[str, datetime]:
        """An invitation: its one-time code (shown once) and until when it may be used."""
        errors: dict[str, str] = {}
        chosen = [code for code in categories if code in self.terms.categories or code == "*"]
        if not chosen:
            errors["categories"] = gettext("error.categories")
        end = _until(until, errors)
        if errors or end is None:
            raise FormErrors(errors)
        try:
            invitation, code = self.services.policies.invite_caregiver(
                session,
                actor,
                patient_id,
                may_add=may_add,
                categories=["*"] if "*" in chosen else chosen,
                until=end,
            )
        except InvalidResource as error:
            raise FormErrors({"until": gettext("error.until.year")}) from error
        return code, invitation.code_expires_at

    def accept(self, session: Session, actor: Actor, code: str) -> str:
        """A caregiver takes up an invitation; returns the record it opens."""
        code = "".join(code.split())
        if not code:
            raise FormErrors({"code": gettext("error.code.required")})
        try:
            entry = self.services.policies.accept_invitation(session, actor, code)
        except NotFound as error:
            raise FormErrors({"code": gettext("error.code.unknown")}) from error
        return entry.patient_id

    def revoke(self, session: Session, actor: Actor, patient_id: str, entry_id: str) -> None:
        self.services.policies.revoke_delegation(session, actor, patient_id, entry_id)

    def withdraw(self, session: Session, actor: Actor, patient_id: str, invitation_id: str) -> None:
        self.services.policies.withdraw_invitation(session, actor, patient_id, invitation_id)

    # -- history ----------------------------------------------------------------------

    def history(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        *,
        role: str | None,
        since: date | None,
        until: date | None,
        cursor: str | None,
    ) -> tuple[list[HistoryRow], str | None]:
        only = HistoryFilter(
            roles=(role,) if role in HISTORY_ROLES else (),
            since=datetime.combine(since, time(), tzinfo=UTC) if since else None,
            until=datetime.combine(until, time(), tzinfo=UTC) + timedelta(days=1)
            if until
            else None,
        )
        page = self.services.audit_log.history.page(
            session, actor, patient_id, HISTORY_PAGE_SIZE, cursor, only
        )
        documents = self._document_labels(session, page.entries)
        return [self._history_row(entry, documents) for entry in page.entries], page.next_cursor

    def _document_labels(self, session: Session, entries: list[AuditEntry]) -> dict[str, str]:
        """Which document an entry is about, by its type's label and date: the history
        shows the document without reading it (the index holds both in clear)."""
        keys = {
            (entry.patient_id, document_id)
            for entry in entries
            if entry.patient_id is not None and (document_id := document_of(entry)) is not None
        }
        labels = {}
        for document_id, row in audit_repository.documents_by_id(session, keys).items():
            if row.deleted_at is not None:
                labels[document_id] = gettext("history.document.deleted")
                continue
            label = self.terms.type(row.type_code) or gettext("document.type.other")
            labels[document_id] = f"{label} ({short_date(row.date or row.created_at)})"
        return labels

    def _history_row(self, entry: AuditEntry, documents: dict[str, str]) -> HistoryRow:
        detail = entry.detail or {}
        role = entry.actor_role
        if role in ("professional", "software"):
            person = entry.on_behalf_of if role == "software" else entry.actor_id
            who = professional_label(person)
            profession = self.terms.profession(str(detail.get("profession") or ""))
            if profession:
                who = f"{who}, {profession}"
        elif role == "patient":
            who = gettext("who.patient.self")
        elif role == "caregiver":
            who = gettext("who.caregiver.named", name=entry.actor_id or "")
        else:
            who = gettext(f"role.{role}")
        document_id = document_of(entry)
        permission = str(detail.get("permission") or "")
        # The most precise text the catalog has: the change (an invitation withdrawn is a
        # delegation:revoke), the permission, or the bare action.
        keys = [f"action.{entry.action}"]
        if permission:
            keys[:0] = [f"action.{permission}.{detail.get('change') or ''}", f"action.{permission}"]
        action = next((text for key in keys if (text := gettext(key)) != key), gettext(keys[-1]))
        return HistoryRow(
            id=entry.id,
            at=entry.occurred_at,
            who=who,
            role=gettext(f"role.{role}"),
            on_behalf_of=professional_label(entry.on_behalf_of) if entry.on_behalf_of else None,
            action=action,
            document=documents.get(document_id) if document_id else None,
            outcome=entry.outcome,
            emergency=entry.purpose == "ETREAT" or detail.get("emergency") == "true",
        )

    def receipt(
        self, session: Session, actor: Actor, patient_id: str, entry_id: int
    ) -> dict[str, Any] | None:
        """The entry with its inclusion proof and the signed checkpoint that covers it;
        None until a checkpoint has taken the entry in."""
        entry = self.services.audit_log.history.entry(session, actor, patient_id, entry_id)
        log = self.services.audit_log
        checkpoint = log.checkpoints.latest(session, entry.log_id)
        leaf = log.tree.leaf_index_of(session, entry.id)
        if checkpoint is None or leaf is None or leaf >= checkpoint.tree_size:
            return None
        path = log.tree.inclusion_proof(session, leaf, checkpoint.tree_size, entry.log_id)
        return {
            "entry": export_record(entry),
            "inclusionProof": {
                "leafIndex": leaf,
                "treeSize": checkpoint.tree_size,
                "leafHash": base64.b64encode(merkle.leaf_hash(entry.entry_hash)).decode(),
                "auditPath": [base64.b64encode(node).decode() for node in path],
            },
            "checkpoint": checkpoint_json(checkpoint),
            "verify": gettext("receipt.verify"),
        }

    # -- taking everything away --------------------------------------------------------

    def exports(self, session: Session, actor: Actor, patient_id: str) -> list[ExportRow]:
        """The person's own latest exports of the record: decided on each refresh of the
        page, not put on record when granted (``ExportService.mine`` says why)."""
        now = utcnow()
        return [
            self._export_row(job, now)
            for job in self.services.exports.mine(session, actor, patient_id)
        ]

    @staticmethod
    def _export_row(job: RecordExport, now: datetime) -> ExportRow:
        status = job.status
        if status == "ready" and (job.expires_at is None or as_utc(job.expires_at) <= now):
            status = "expired"
        return ExportRow(
            id=job.id,
            status=status,
            progress=max(0, min(100, job.progress)),
            requested_at=job.requested_at,
            expires_at=job.expires_at,
            documents=job.documents,
            size=file_size(job.archive_size or 0),
        )

    def request_export(self, session: Session, actor: Actor, patient_id: str) -> None:
        try:
            self.services.exports.request(session, actor, patient_id)
        except TooManyRequests as error:
            limit = self.services.settings.export_daily_limit
            raise FormErrors(
                {"export": gettext("error.export.limit", limit=limit)}, status_code=429
            ) from error
        except Conflict as error:
            raise FormErrors(
                {"export": gettext("error.export.running")}, status_code=409
            ) from error

    def export_archive(
        self, session: Session, actor: Actor, patient_id: str, export_id: str
    ) -> Download:
        """The archive, for the person who asked for it: an audited download."""
        try:
            return self.services.exports.download(session, actor, patient_id, export_id)
        except ExportNotReady as error:
            raise PageRefused(gettext("error.export.not_ready"), 409) from error
        except Gone as error:
            raise PageRefused(gettext("error.export.gone"), 410) from error

    # -- e-mail -----------------------------------------------------------------------

    def email_preferences(
        self, session: Session, actor: Actor, patient_id: str
    ) -> EmailPreferences:
        """The record's e-mail address and chosen events (an audited read)."""
        found = self.services.notifications.view(session, actor, patient_id)
        return EmailPreferences(
            address=found.address,
            confirmed=found.confirmed,
            events=[
                (kind, gettext(f"emails.event.{kind}"), kind in found.events)
                for kind in email_templates.EVENT_KINDS
            ],
        )

    def set_email_address(self, session: Session, actor: Actor, patient_id: str, text: str) -> None:
        address = text.strip()
        if not address:
            raise FormErrors({"address": gettext("error.email.required")})
        if len(address) > 320:
            raise FormErrors({"address": gettext("error.email.invalid")})
        try:
            self.services.notifications.set_address(session, actor, patient_id, address)
        except TooManyRequests as error:
            raise FormErrors({"address": gettext("error.email.limit")}, status_code=429) from error
        except InvalidResource as error:
            raise FormErrors({"address": gettext("error.email.invalid")}) from error

    def set_email_events(
        self, session: Session, actor: Actor, patient_id: str, events: list[str]
    ) -> None:
        chosen = [kind for kind in email_templates.EVENT_KINDS if kind in set(events)]
        self.services.notifications.set_events(session, actor, patient_id, chosen)

    def remove_email_address(self, session: Session, actor: Actor, patient_id: str) -> None:
        self.services.notifications.remove_address(session, actor, patient_id)

    # -- notifications ----------------------------------------------------------------

    def notifications(
        self, session: Session, actor: Actor, principal: Principal, patient_id: str
    ) -> list[NotificationRow]:
        """What the vault told (or will tell) the patient, newest first; reading them
        reads the history, so it is decided and recorded as such."""
        self.services.access.authorize(
            session,
            actor,
            Permission.AUDIT_READ,
            patient_id,
            resource_type="AuditEvent",
            detail={"interaction": "notifications"},
            not_found_as="Patient",
        )
        visitor = session.get(WebVisitor, self.visitor_key(principal))
        seen = visitor.notifications_seen_at if visitor else None
        rows = notifications_repository.latest_notifications(session, patient_id, 50)
        found = []
        for row in rows:
            who = (
                professional_label(row.actor_id)
                if row.actor_role in ("professional", "software")
                else gettext(f"role.{row.actor_role}")
            )
            found.append(
                NotificationRow(
                    id=row.id,
                    at=row.created_at,
                    kind=row.kind,
                    text=gettext(f"notification.{row.kind}", who=who),
                    unread=seen is None or row.created_at > seen,
                )
            )
        return found

    def unread_count(self, session: Session, principal: Principal, patient_id: str) -> int:
        visitor = session.get(WebVisitor, self.visitor_key(principal))
        seen = visitor.notifications_seen_at if visitor else None
        return len(notifications_repository.notification_ids_after(session, patient_id, seen, 100))

    def mark_notifications_read(self, session: Session, principal: Principal) -> None:
        key = self.visitor_key(principal)
        row = session.get(WebVisitor, key)
        if row is None:
            row = WebVisitor(key=key, last_visit_at=utcnow())
            session.add(row)
        row.notifications_seen_at = utcnow()
        session.flush()


def _until(text: str, errors: dict[str, str]) -> datetime | None:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        errors["until"] = gettext("error.until")
        return None
    # The patient picks a day on France's calendar: it ends at the end of that day there,
    # not in UTC, or the space would show (and the access last until) the next day.
    today = datetime.now(TIMEZONE).date()
    if day <= today:
        errors["until"] = gettext("error.until.past")
        return None
    if day > today + timedelta(days=365):
        errors["until"] = gettext("error.until.year")
        return None
    return datetime.combine(day, time(23, 59), tzinfo=TIMEZONE).astimezone(UTC)


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            candidate = value.strip('"').lower()
            try:
                "".encode(candidate)
            except LookupError:
                return "utf-8"
            return candidate
    return "utf-8"


def fhir_sections(data: bytes) -> list[tuple[str, str]]:
    """A FHIR document Bundle's Composition sections as (title, sanitised narrative)."""
    try:
        bundle = json.loads(data)
    except (ValueError, RecursionError):
        return []
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return []
    if bundle.get("type") != "document":
        return []
    entries = bundle.get("entry") or []
    composition = next(
        (
            entry.get("resource")
            for entry in entries
            if isinstance(entry, dict)
            and isinstance(entry.get("resource"), dict)
            and entry["resource"].get("resourceType") == "Composition"
        ),
        None,
    )
    if composition is None:
        return []
    sections: list[tuple[str, str]] = []

    def walk(items: list[Any]) -> None:
        for section in items:
            if not isinstance(section, dict):
                continue
            title = str(section.get("title") or "")
            div = (
                (section.get("text") or {}).get("div")
                if isinstance(section.get("text"), dict)
                else None
            )
            if isinstance(div, str) and div:
                sections.append((title, sanitise(div)))
            elif title:
                sections.append((title, ""))
            walk(section.get("section") or [])

    walk(composition.get("section") or [])
    return sections


def sanitise(html: str) -> str:
    """Narrative HTML made inert: no script, no style, no link, no attribute but a few."""
    return nh3.clean(
        html,
        tags=set(NARRATIVE_TAGS),
        attributes={"td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan", "scope"}},
        url_schemes=set(),
        strip_comments=True,
        link_rel=None,
    )
