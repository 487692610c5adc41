"""``Patient/$everything`` for SMART patient apps: the export's resources, paged, with the
documents by reference to their Binary instead of inside an archive.

Pages run through three phases named by the cursor: the Patient and its Consents (first
page), the DocumentReferences (keyset-paged as searches are), then the AuditEvents (as the
history pages them). Every read is decided and audited as the export's are; the request
itself is ``record:export`` (the patient or a minor's legal representative).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vault.access.permissions import Permission
from vault.access.policy import Actor
from vault.audit.events import audit_event
from vault.db import Session
from vault.documents import repository as documents_repository
from vault.documents.search import decode_cursor, encode_cursor
from vault.errors import BadRequest
from vault.exports.archive import Readers
from vault.patients import repository as patients_repository
from vault.policies.consent import consents


@dataclass(frozen=True)
class EverythingPage:
    resources: list[dict[str, Any]]
    next_cursor: str | None


class Everything:
    def __init__(self, readers: Readers, base_url: str) -> None:
        self._readers = readers
        self._base = base_url.rstrip("/")

    def page(
        self, session: Session, actor: Actor, patient_id: str, count: int, cursor: str | None
    ) -> EverythingPage:
        readers = self._readers
        if patients_repository.get(session, patient_id) is None:
            # Refused as another's record is, at the same cost (docs/threat-model.md).
            raise readers.access.refuse_unknown(
                session,
                actor,
                Permission.RECORD_EXPORT,
                resource_type="Patient",
                resource_id=patient_id,
                detail={"stage": "everything"},
                not_found_as="Patient",
            )
        readers.access.authorize(
            session,
            actor,
            Permission.RECORD_EXPORT,
            patient_id,
            resource_type="Patient",
            resource_id=patient_id,
            detail={"stage": "everything"},
            not_found_as="Patient",
        )
        phase, _, rest = (cursor or "p.").partition(".")
        if phase not in ("p", "d", "a"):
            raise BadRequest("Invalid paging cursor", expression="_cursor")
        resources: list[dict[str, Any]] = []
        if phase == "p":
            resources.append(readers.patients.read(session, actor, patient_id))
            resources.extend(consents(readers.policies.view(session, actor, patient_id)))
            phase, rest = "d", ""
        if phase == "d":
            after = decode_cursor(rest) if rest else None
            after, exhausted = self._documents(session, actor, patient_id, count, after, resources)
            if not exhausted:
                # A first page filled by the Patient and its Consents resumes at the start.
                return EverythingPage(resources, "d." + (encode_cursor(*after) if after else ""))
            phase, rest = "a", ""
            if len(resources) >= count:
                return EverythingPage(resources, "a.")
        history = readers.history.page(
            session, actor, patient_id, max(1, count - len(resources)), rest or None
        )
        resources.extend(audit_event(entry, self._base) for entry in history.entries)
        return EverythingPage(
            resources, "a." + history.next_cursor if history.next_cursor else None
        )

    def _documents(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        count: int,
        after: tuple[datetime, str] | None,
        resources: list[dict[str, Any]],
    ) -> tuple[tuple[datetime, str] | None, bool]:
        """Fills ``resources`` up to ``count`` with the documents the caller may see;
        returns where it stopped and whether no document is left."""
        readers = self._readers
        query = documents_repository.search_query(documents_repository.SearchCriteria(patient_id))
        while True:
            batch = documents_repository.page_after(session, query, after, count)
            for document in batch:
                if len(resources) >= count:
                    return after, False
                after = (document.created_at, document.id)
                if document.deleted_at is not None or not readers.access.check(
                    actor,
                    Permission.DOCUMENT_READ,
                    patient_id,
                    documents_repository.facts(document),
                ):
                    continue
                resources.append(readers.documents.read(session, actor, document.id))
            if len(batch) < count:
                return after, True
