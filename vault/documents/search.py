"""ITI-67 Find Document References.

The database narrows by the patient, the search parameters and what the reader may see
(``AccessService.readable``: the decision function's rules as a condition of the query),
newest first from a keyset cursor on the search index: a page reads what it returns and
one more, however long the record. Each candidate still goes through the decision
function itself before it is shown, so the query can only ever narrow what a single read
would allow; and pages are filled from the cursor so that this never produces short or
repeated pages.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vault.access import filters
from vault.access.permissions import Permission
from vault.access.policy import Actor, DocumentFacts
from vault.access.service import AccessService
from vault.db import Session
from vault.documents import repository
from vault.documents.repository import SearchCriteria
from vault.documents.service import DocumentService
from vault.errors import BadRequest

SCAN_BATCH = 100


@dataclass(frozen=True)
class ListedDocument:
    id: str
    created_at: datetime
    sort_at: datetime
    facts: DocumentFacts
    resource: dict[str, Any]


@dataclass
class DatedPage:
    documents: list[ListedDocument]
    next_cursor: str | None


@dataclass
class SearchPage:
    resources: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(created_at: datetime, document_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), document_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, document_id = json.loads(raw)
        return datetime.fromisoformat(created), str(document_id)
    except (ValueError, TypeError):
        raise BadRequest("Invalid paging cursor", expression="_cursor") from None


class DocumentSearch:
    def __init__(self, access: AccessService, documents: DocumentService) -> None:
        self.access = access
        self.documents = documents

    def refuse_unknown_patient(self, session: Session, actor: Actor) -> SearchPage:
        """A search on a patient who has no record answers as a search on a record one may
        not search does (an empty page), at the same cost: the refusal decided and
        recorded in this transaction, as ``search`` does."""
        self.access.refuse_unknown_search(session, actor, resource_type="DocumentReference")
        return SearchPage([], None)

    def search(
        self,
        session: Session,
        actor: Actor,
        criteria: SearchCriteria,
        count: int,
        cursor: str | None,
    ) -> SearchPage:
        # A malformed cursor is refused before anything is read or recorded.
        after = decode_cursor(cursor) if cursor else None
        recorded = self.access.authorize_search(
            session, actor, criteria.patient_id, resource_type="DocumentReference"
        )
        if recorded is None:
            # Refused, and on record: the answer is a page with no visible document.
            return SearchPage([], None)
        # The page is read, then the search's entry committed; the page goes out after.
        page = self._page(session, actor, criteria, count, after)
        recorded.wait()
        return page

    def _page(
        self,
        session: Session,
        actor: Actor,
        criteria: SearchCriteria,
        count: int,
        after: tuple[datetime, str] | None,
    ) -> SearchPage:
        visible = self.access.readable(actor, criteria.patient_id)
        if visible == filters.NOTHING:
            return SearchPage([], None)
        found: list[dict[str, Any]] = []
        last_seen: tuple[datetime, str] | None = None
        # First the page and one more, each with its current version, in one statement: when
        # the caller may see them all (a patient's own record, mostly) that is the whole
        # search. Only filtering sends it on, in larger batches of documents alone.
        limit = count + 1
        batch = repository.candidates(
            session, criteria, after, limit, with_current=True, visible=visible
        )
        while batch:
            after = (batch[-1].created_at, batch[-1].id)
            shown = [
                candidate
                for candidate in batch
                if self.access.check(
                    actor, Permission.DOCUMENT_READ, candidate.facts.patient_id, candidate.facts
                )
            ]
            # One query for the versions likely to be shown, rather than one per document.
            loaded = repository.current_versions(
                session,
                criteria.patient_id,
                [
                    candidate.id
                    for candidate in shown[: count - len(found)]
                    if candidate.current is None
                ],
            )
            for candidate in shown:
                if len(found) == count:
                    # One more visible result exists: the page is full and a next page is due.
                    return SearchPage(found, encode_cursor(*last_seen) if last_seen else None)
                current = (
                    candidate.current
                    or loaded.get(candidate.id)
                    or repository.version(
                        session, criteria.patient_id, candidate.id, candidate.current_version
                    )
                )
                resource = (
                    self.documents.read_listed(session, actor, current, candidate.facts)
                    if current is not None
                    else None
                )
                if resource is None:
                    continue
                found.append(resource)
                last_seen = (candidate.created_at, candidate.id)
            if len(batch) < limit:
                break
            limit = max(limit, SCAN_BATCH)
            batch = repository.candidates(
                session, criteria, after, limit, with_current=False, visible=visible
            )
        return SearchPage(found, None)

    def by_date(
        self,
        session: Session,
        actor: Actor,
        criteria: SearchCriteria,
        count: int,
        cursor: str | None,
    ) -> DatedPage:
        """The documents the actor may see, newest first by their date: one search,
        decided and recorded as ``search`` is, each result decided as a single read."""
        self.access.authorize(
            session,
            actor,
            Permission.DOCUMENT_SEARCH,
            criteria.patient_id,
            resource_type="DocumentReference",
            not_found_as="Patient",
        )
        after = decode_cursor(cursor) if cursor else None
        found: list[ListedDocument] = []
        limit = count + 1
        while True:
            batch = repository.dated_candidates(session, criteria, after, limit)
            for dated in batch:
                candidate = dated.candidate
                after = (dated.sort_at, candidate.id)
                if candidate.current is None or not self.access.check(
                    actor, Permission.DOCUMENT_READ, candidate.facts.patient_id, candidate.facts
                ):
                    continue
                if len(found) == count:
                    last = found[-1]
                    return DatedPage(found, encode_cursor(last.sort_at, last.id))
                resource = self.documents.read_listed(
                    session, actor, candidate.current, candidate.facts
                )
                if resource is None:
                    continue
                found.append(
                    ListedDocument(
                        candidate.id, candidate.created_at, dated.sort_at, candidate.facts, resource
                    )
                )
            if len(batch) < limit:
                return DatedPage(found, None)
            limit = max(limit, SCAN_BATCH)
