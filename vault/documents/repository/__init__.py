"""The only place that builds SQL for documents, with rows.py (the write path's Core
statements)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    false,
    func,
    not_,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.orm import Session

from vault.access import filters
from vault.access.policy import DocumentFacts
from vault.models import Binary, Document, DocumentVersion, ResourcePatient
from vault.models.base import utcnow


def labels_text(labels: frozenset[str]) -> str:
    return " " + " ".join(sorted(labels)) + " " if labels else " "


def labels_of(text: str) -> frozenset[str]:
    return frozenset(text.split())


def facts(document: Document) -> DocumentFacts:
    return DocumentFacts(
        patient_id=document.patient_id,
        author_kind=document.author_kind,
        author_id=document.author_id,
        security_labels=labels_of(document.security_labels),
        status=document.status,
        type_code=document.type_code,
        category_code=document.category_code,
    )


# What resource_patients knows (vault/models/reference.py).
DOCUMENT = "document"
BINARY = "binary"

_REFERENCES = cast(Table, ResourcePatient.__table__)
# On the table, run on the session's connection: a Core statement skips the ORM's
# execution (its compile and result set-up), a third of this lookup's cost on a download.
_PATIENT_OF = select(_REFERENCES.c.patient_id).where(
    _REFERENCES.c.kind == bindparam("kind"), _REFERENCES.c.resource_id == bindparam("id")
)


def patient_of(session: Session, kind: str, resource_id: str) -> str | None:
    """The patient a document, binary or SubmissionSet belongs to, from the reference table:
    a read by a global id resolves its patient first, then reads the patient's rows."""
    found: str | None = (
        session.connection().execute(_PATIENT_OF, {"kind": kind, "id": resource_id}).scalar()
    )
    return found


# A patient id no row has (ids are never empty): a read or change by an unknown global id
# still runs its patient-scoped queries, so that "does not exist" costs what "exists but may
# not be seen" does (tests/hardening/test_timing_oracles.py).
NO_PATIENT = ""


def get_for_update(
    session: Session, document_id: str, patient_id: str | None = None
) -> Document | None:
    patient_id = patient_id or patient_of(session, DOCUMENT, document_id)
    return session.get(
        Document, {"patient_id": patient_id or NO_PATIENT, "id": document_id}, with_for_update=True
    )


def get_unchecked(
    session: Session, document_id: str, patient_id: str | None = None
) -> Document | None:
    """A document's row, undecided: for the document service, which decides before anything
    of it goes out (``DocumentService``), and nothing else. Pass its patient when it is
    known, to skip the reference table."""
    patient_id = patient_id or patient_of(session, DOCUMENT, document_id)
    return session.get(Document, {"patient_id": patient_id or NO_PATIENT, "id": document_id})


# Version numbers are 32-bit in the database: a larger one names no version (and, sent as
# a query parameter, would be a database error rather than an absent row).
MAX_VERSION = 2**31 - 1


def version(
    session: Session, patient_id: str, document_id: str, number: int
) -> DocumentVersion | None:
    if not 0 < number <= MAX_VERSION:
        return None
    return session.get(
        DocumentVersion, {"patient_id": patient_id, "document_id": document_id, "version": number}
    )


def current_versions(
    session: Session, patient_id: str, document_ids: Sequence[str]
) -> dict[str, DocumentVersion]:
    """The current version of each of a patient's documents, by document id, in one query."""
    if not document_ids:
        return {}
    rows = session.scalars(
        select(DocumentVersion)
        .join(
            Document,
            and_(
                Document.patient_id == DocumentVersion.patient_id,
                Document.id == DocumentVersion.document_id,
                Document.current_version == DocumentVersion.version,
            ),
        )
        .where(Document.patient_id == patient_id, Document.id.in_(document_ids))
    )
    return {row.document_id: row for row in rows}


def versions(session: Session, patient_id: str, document_id: str) -> Sequence[DocumentVersion]:
    return session.scalars(
        select(DocumentVersion)
        .where(DocumentVersion.patient_id == patient_id, DocumentVersion.document_id == document_id)
        .order_by(DocumentVersion.version)
    ).all()


def binaries_of(session: Session, patient_id: str, document_id: str) -> Sequence[Binary]:
    return session.scalars(
        select(Binary).where(Binary.patient_id == patient_id, Binary.document_id == document_id)
    ).all()


@dataclass(frozen=True, slots=True)
class StoredContent:
    """A binary's row, with the facts of the document it belongs to."""

    id: str
    document_id: str
    patient_id: str
    content_type: str
    size: int
    blob_key: str
    segment_size: int
    wrapped_dek: bytes | None
    kek_id: str
    document: DocumentFacts


def stored_content(session: Session, binary_id: str) -> StoredContent | None:
    """A binary and its document's facts in one query; None when either is absent."""
    patient_id = patient_of(session, BINARY, binary_id) or NO_PATIENT
    row = (
        session.connection()
        .execute(_STORED_CONTENT, {"patient_id": patient_id, "binary_id": binary_id})
        .first()
    )
    if row is None:
        return None
    return StoredContent(*row[:9], _facts_of(row[9:]))


@dataclass(frozen=True)
class SearchCriteria:
    patient_id: str
    statuses: tuple[str, ...] = ()
    type_codes: tuple[str, ...] = ()
    category_codes: tuple[str, ...] = ()
    security_labels: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    date_from: datetime | None = None
    date_from_inclusive: bool = True
    date_to: datetime | None = None
    date_to_inclusive: bool = True

    @property
    def patient_only(self) -> bool:
        """Nothing narrows the search but the patient."""
        return self == SearchCriteria(self.patient_id)


_DOCUMENTS = cast(Table, Document.__table__)
_VERSIONS = cast(Table, DocumentVersion.__table__)
_BINARIES = cast(Table, Binary.__table__)
# What an access decision reads of a document, in the order _facts_of takes it.
_FACT_COLUMNS = (
    _DOCUMENTS.c.patient_id,
    _DOCUMENTS.c.author_kind,
    _DOCUMENTS.c.author_id,
    _DOCUMENTS.c.security_labels,
    _DOCUMENTS.c.status,
    _DOCUMENTS.c.type_code,
    _DOCUMENTS.c.category_code,
)


def _facts_of(values: Sequence[Any]) -> DocumentFacts:
    """``facts`` of a row holding ``_FACT_COLUMNS``."""
    patient_id, author_kind, author_id, labels, status, type_code, category_code = values[:7]
    return DocumentFacts(
        patient_id=patient_id,
        author_kind=author_kind,
        author_id=author_id,
        security_labels=labels_of(labels),
        status=status,
        type_code=type_code,
        category_code=category_code,
    )


# Built once, plain rows rather than ORM objects: every download runs it.
_STORED_CONTENT = (
    select(
        _BINARIES.c.id,
        _BINARIES.c.document_id,
        _BINARIES.c.patient_id,
        _BINARIES.c.content_type,
        _BINARIES.c.size,
        _BINARIES.c.blob_key,
        _BINARIES.c.segment_size,
        _BINARIES.c.wrapped_dek,
        _BINARIES.c.kek_id,
        *_FACT_COLUMNS,
    )
    .join_from(
        _BINARIES,
        _DOCUMENTS,
        (_DOCUMENTS.c.patient_id == _BINARIES.c.patient_id)
        & (_DOCUMENTS.c.id == _BINARIES.c.document_id),
    )
    .where(
        _BINARIES.c.patient_id == bindparam("patient_id"), _BINARIES.c.id == bindparam("binary_id")
    )
)


def _token_clause(column: ColumnElement[Any], tokens: tuple[str, ...]) -> ColumnElement[bool]:
    """A token is ``system|code``, ``|code`` (no system) or ``code`` (any system)."""
    clauses = []
    for token in tokens:
        if "|" in token:
            clauses.append(column == token)
        else:
            clauses.append(column.like(f"%|{_escape(token)}", escape="\\"))
    return or_(*clauses)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filters(criteria: SearchCriteria) -> list[ColumnElement[bool]]:
    """What narrows a search beyond its patient."""
    column = _DOCUMENTS.c
    filters: list[ColumnElement[bool]] = []
    if criteria.statuses:
        filters.append(column.status.in_(criteria.statuses))
    if criteria.type_codes:
        filters.append(_token_clause(column.type_code, criteria.type_codes))
    if criteria.category_codes:
        filters.append(_token_clause(column.category_code, criteria.category_codes))
    if criteria.security_labels:
        codes = [label.rpartition("|")[2] for label in criteria.security_labels]
        filters.append(
            or_(
                *(
                    column.security_labels.like(f"% {_escape(code)} %", escape="\\")
                    for code in codes
                )
            )
        )
    if criteria.authors:
        filters.append(column.author_id.in_(criteria.authors))
    if criteria.date_from is not None:
        filters.append(
            column.date >= criteria.date_from
            if criteria.date_from_inclusive
            else column.date > criteria.date_from
        )
    if criteria.date_to is not None:
        filters.append(
            column.date <= criteria.date_to
            if criteria.date_to_inclusive
            else column.date < criteria.date_to
        )
    return filters


def _matches(column: ColumnElement[Any], token: str) -> ColumnElement[bool]:
    """``vault.access.state.token_matches``: ``system|code`` exactly, a bare code whatever
    the system (or none)."""
    if "|" in token:
        return column == token
    return or_(column == token, column.like(f"%|{_escape(token)}", escape="\\"))


def _matches_clause(visible: filters.Matches) -> ColumnElement[bool]:
    if "*" in visible.tokens:
        return true()
    field = _DOCUMENTS.c[visible.field]
    # A NULL code matches no token: said outright, so that NOT of it is true, as in Python,
    # rather than NULL.
    return and_(field.is_not(None), or_(*(_matches(field, t) for t in sorted(visible.tokens))))


def visible_clause(visible: filters.Filter) -> ColumnElement[bool]:
    """``visible`` (from ``vault.access.policy.readable``) as a condition on the documents
    table: exactly the rows ``filters.evaluate`` admits, NULL codes included."""
    column = _DOCUMENTS.c
    if isinstance(visible, filters.Authored):
        return and_(column.author_kind == visible.kind, column.author_id == visible.id)
    if isinstance(visible, filters.Labelled):
        return column.security_labels.like(f"% {_escape(visible.label)} %", escape="\\")
    if isinstance(visible, filters.Matches):
        return _matches_clause(visible)
    if isinstance(visible, filters.Not):
        return not_(visible_clause(visible.term))
    if isinstance(visible, filters.AllOf):
        return and_(true(), *(visible_clause(term) for term in visible.terms))
    return or_(false(), *(visible_clause(term) for term in visible.terms))


def search_query(criteria: SearchCriteria) -> Select[Document]:
    return select(Document).where(
        _DOCUMENTS.c.patient_id == criteria.patient_id,
        _DOCUMENTS.c.deleted_at.is_(None),
        *_filters(criteria),
    )


def page_after(
    session: Session, query: Select[Document], after: tuple[datetime, str] | None, limit: int
) -> Sequence[Document]:
    """Newest first, keyset-paged on (created_at, id): stable under concurrent inserts and
    as cheap on page 1000 as on page 1."""
    if after is not None:
        created, document_id = after
        query = query.where(tuple_(Document.created_at, Document.id) < tuple_(created, document_id))
    return session.scalars(
        query.order_by(Document.created_at.desc(), Document.id.desc()).limit(limit)
    ).all()


@dataclass(frozen=True, slots=True)
class SealedVersion:
    """A version's sealed resource and what opens it: all a search needs of a version."""

    document_id: str
    version: int
    patient_id: str
    resource_ciphertext: bytes | None
    resource_dek: bytes | None
    kek_id: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """A document a search found, before the access check decides whether it is shown;
    with its current version when read with it (None if not, or if that row is missing)."""

    id: str
    created_at: datetime
    current_version: int
    facts: DocumentFacts
    current: SealedVersion | None = None


def candidates_query(
    criteria: SearchCriteria,
    *,
    after: bool,
    with_current: bool,
    visible: filters.Filter = filters.EVERYTHING,
) -> Select[*tuple[Any, ...]]:
    """``page_after``'s page as plain rows of candidates (ORM objects would cost as much as
    the query), for the parameters ``patient_id``, ``limit`` and, ``after``, the keyset
    ``after_created`` and ``after_id``; ``with_current``, each joined to its current
    version; only those ``visible`` admits. The documents are reached through their search
    index, each version by its primary key."""
    document = _DOCUMENTS.c
    query = select(
        document.id,
        document.created_at,
        document.current_version,
        *_FACT_COLUMNS,
    ).where(
        document.patient_id == bindparam("patient_id"),
        document.deleted_at.is_(None),
        *_filters(criteria),
    )
    if visible != filters.EVERYTHING:
        query = query.where(visible_clause(visible))
    if after:
        # A row-value comparison, which PostgreSQL takes as where to start in the index;
        # spelt out with OR it is only a filter, and a page deep in a long record would
        # scan every newer document to reach it.
        query = query.where(
            tuple_(document.created_at, document.id)
            < tuple_(
                bindparam("after_created", type_=document.created_at.type),
                bindparam("after_id", type_=document.id.type),
            )
        )
    if with_current:
        version = _VERSIONS.c
        query = query.add_columns(
            version.version,
            version.patient_id,
            version.resource_ciphertext,
            version.resource_dek,
            version.kek_id,
        ).select_from(
            _DOCUMENTS.outerjoin(
                _VERSIONS,
                and_(
                    # Through coalesce, not as a plain equality: an equality would put the
                    # versions' patient_id in one class with the search's parameter, and
                    # PostgreSQL's generic plan for a prepared search (whose patient's size
                    # it cannot know) then reads every version of the patient to join a
                    # page: 90 ms on a record of 10,000. This way each row of the page
                    # looks up its version by primary key, whatever the record's size.
                    version.patient_id == func.coalesce(document.patient_id, ""),
                    version.document_id == document.id,
                    version.version == document.current_version,
                ),
            )
        )
    return query.order_by(document.created_at.desc(), document.id.desc()).limit(
        bindparam("limit", type_=Integer)
    )


@lru_cache(maxsize=1024)
def _patient_only(
    after: bool, with_current: bool, visible: filters.Filter
) -> Select[*tuple[Any, ...]]:
    """Most searches name the patient alone, and their readers' filters take few shapes:
    their statements are built once (building one costs as much as running it)."""
    return candidates_query(
        SearchCriteria(""), after=after, with_current=with_current, visible=visible
    )


def candidates(
    session: Session,
    criteria: SearchCriteria,
    after: tuple[datetime, str] | None,
    limit: int,
    *,
    with_current: bool,
    visible: filters.Filter = filters.EVERYTHING,
) -> list[Candidate]:
    """Newest first, keyset-paged on (created_at, id), as ``page_after``; only the
    documents ``visible`` admits."""
    statement = (
        _patient_only(after is not None, with_current, visible)
        if criteria.patient_only
        else candidates_query(
            criteria, after=after is not None, with_current=with_current, visible=visible
        )
    )
    parameters: dict[str, Any] = {"patient_id": criteria.patient_id, "limit": limit}
    if after is not None:
        parameters["after_created"], parameters["after_id"] = after
    found = []
    for row in session.connection().execute(statement, parameters):
        document_id, created_at, current_version = row[:3]
        facts = _facts_of(row[3:])
        current = None
        if with_current and row[10] is not None:
            current = SealedVersion(document_id, row[10], row[11], row[12], row[13], row[14])
        found.append(Candidate(document_id, created_at, current_version, facts, current))
    return found


@dataclass(frozen=True, slots=True)
class Dated:
    """A candidate with the moment a list by date sorts it on: its date, else its upload."""

    candidate: Candidate
    sort_at: datetime


def dated_candidates(
    session: Session,
    criteria: SearchCriteria,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Dated]:
    """Newest first by the document's date (its upload for an undated one), keyset-paged
    on (that moment, id), each with its current version: the patient's space lists a
    record as people think of it, by when things happened."""
    document = _DOCUMENTS.c
    version = _VERSIONS.c
    sort_at = func.coalesce(document.date, document.created_at)
    query = (
        select(
            document.id,
            document.created_at,
            document.current_version,
            *_FACT_COLUMNS,
            version.version,
            version.patient_id,
            version.resource_ciphertext,
            version.resource_dek,
            version.kek_id,
            sort_at.label("sort_at"),
        )
        .select_from(
            _DOCUMENTS.outerjoin(
                _VERSIONS,
                and_(
                    version.patient_id == document.patient_id,
                    version.document_id == document.id,
                    version.version == document.current_version,
                ),
            )
        )
        .where(
            document.patient_id == criteria.patient_id,
            document.deleted_at.is_(None),
            *_filters(criteria),
        )
    )
    if after is not None:
        moment, document_id = after
        query = query.where(
            or_(sort_at < moment, and_(sort_at == moment, document.id < document_id))
        )
    query = query.order_by(sort_at.desc(), document.id.desc()).limit(limit)
    found = []
    for row in session.connection().execute(query):
        document_id, created_at, current_version = row[:3]
        current = None
        if row[10] is not None:
            current = SealedVersion(document_id, row[10], row[11], row[12], row[13], row[14])
        sort_value = row[15]
        if isinstance(sort_value, str):  # SQLite returns coalesce() as text
            sort_value = datetime.fromisoformat(sort_value)
        if sort_value.tzinfo is None:
            sort_value = sort_value.replace(tzinfo=created_at.tzinfo)
        candidate = Candidate(document_id, created_at, current_version, _facts_of(row[3:]), current)
        found.append(Dated(candidate, sort_value))
    return found


def shred(session: Session, document: Document, deleted_at: datetime) -> None:
    """Destroy every data key of every version and of the content (crypto-shredding);
    the tombstone, the version rows and the audit trail remain."""
    for row in versions(session, document.patient_id, document.id):
        row.resource_dek = None
        row.resource_ciphertext = None
    for content in binaries_of(session, document.patient_id, document.id):
        content.wrapped_dek = None
        content.shredded_at = deleted_at
    document.deleted_at = deleted_at
    document.status = "entered-in-error"
    # The index keeps no hint of what the document was.
    document.type_code = None
    document.category_code = None
    document.updated_at = utcnow()
    session.flush()


def content_bytes(session: Session, patient_id: str) -> int:
    """The content bytes of a record's current documents (what an export's progress counts)."""
    total = session.scalar(
        select(func.coalesce(func.sum(Binary.size), 0))
        .select_from(Document)
        .join(
            DocumentVersion,
            (DocumentVersion.patient_id == Document.patient_id)
            & (DocumentVersion.document_id == Document.id)
            & (DocumentVersion.version == Document.current_version),
        )
        .join(
            Binary,
            (Binary.patient_id == DocumentVersion.patient_id)
            & (Binary.id == DocumentVersion.binary_id),
        )
        .where(Document.patient_id == patient_id, Document.deleted_at.is_(None))
    )
    return int(total or 0)
