"""The only place that builds SQL for documents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from vault.access.policy import DocumentFacts
from vault.models import Binary, Document, DocumentVersion
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


def by_master_identifier(session: Session, master_identifier: str) -> Document | None:
    return session.scalar(select(Document).where(Document.master_identifier == master_identifier))


def get_for_update(session: Session, document_id: str) -> Document | None:
    return session.get(Document, document_id, with_for_update=True)


def get(session: Session, document_id: str) -> Document | None:
    return session.get(Document, document_id)


# Version numbers are 32-bit in the database: a larger one names no version (and, sent as
# a query parameter, would be a database error rather than an absent row).
MAX_VERSION = 2**31 - 1


def version(session: Session, document_id: str, number: int) -> DocumentVersion | None:
    if not 0 < number <= MAX_VERSION:
        return None
    return session.get(DocumentVersion, (document_id, number))


def current_versions(session: Session, documents: Sequence[Document]) -> dict[str, DocumentVersion]:
    """The current version of each document, by document id, in one query."""
    if not documents:
        return {}
    rows = session.scalars(
        select(DocumentVersion)
        .join(
            Document,
            and_(
                Document.id == DocumentVersion.document_id,
                Document.current_version == DocumentVersion.version,
            ),
        )
        .where(Document.id.in_([document.id for document in documents]))
    )
    return {row.document_id: row for row in rows}


def versions(session: Session, document_id: str) -> Sequence[DocumentVersion]:
    return session.scalars(
        select(DocumentVersion)
        .where(DocumentVersion.document_id == document_id)
        .order_by(DocumentVersion.version)
    ).all()


def binaries_of(session: Session, document_id: str) -> Sequence[Binary]:
    return session.scalars(select(Binary).where(Binary.document_id == document_id)).all()


def binary(session: Session, binary_id: str) -> Binary | None:
    return session.get(Binary, binary_id)


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


def _token_clause(
    column: InstrumentedAttribute[str | None], tokens: tuple[str, ...]
) -> ColumnElement[bool]:
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


def search_query(criteria: SearchCriteria) -> Select[Document]:
    query = select(Document).where(
        Document.patient_id == criteria.patient_id, Document.deleted_at.is_(None)
    )
    if criteria.statuses:
        query = query.where(Document.status.in_(criteria.statuses))
    if criteria.type_codes:
        query = query.where(_token_clause(Document.type_code, criteria.type_codes))
    if criteria.category_codes:
        query = query.where(_token_clause(Document.category_code, criteria.category_codes))
    if criteria.security_labels:
        codes = [label.rpartition("|")[2] for label in criteria.security_labels]
        query = query.where(
            or_(
                *(
                    Document.security_labels.like(f"% {_escape(code)} %", escape="\\")
                    for code in codes
                )
            )
        )
    if criteria.authors:
        query = query.where(Document.author_id.in_(criteria.authors))
    if criteria.date_from is not None:
        query = query.where(
            Document.date >= criteria.date_from
            if criteria.date_from_inclusive
            else Document.date > criteria.date_from
        )
    if criteria.date_to is not None:
        query = query.where(
            Document.date <= criteria.date_to
            if criteria.date_to_inclusive
            else Document.date < criteria.date_to
        )
    return query


def page_after(
    session: Session, query: Select[Document], after: tuple[datetime, str] | None, limit: int
) -> Sequence[Document]:
    """Newest first, keyset-paged on (created_at, id): stable under concurrent inserts and
    as cheap on page 1000 as on page 1."""
    if after is not None:
        created, document_id = after
        query = query.where(
            or_(
                Document.created_at < created,
                and_(Document.created_at == created, Document.id < document_id),
            )
        )
    return session.scalars(
        query.order_by(Document.created_at.desc(), Document.id.desc()).limit(limit)
    ).all()


def shred(session: Session, document: Document, deleted_at: datetime) -> None:
    """Destroy every data key of every version and of the content (crypto-shredding);
    the tombstone, the version rows and the audit trail remain."""
    for row in versions(session, document.id):
        row.resource_dek = None
        row.resource_ciphertext = None
    for content in binaries_of(session, document.id):
        content.wrapped_dek = None
        content.shredded_at = deleted_at
    document.deleted_at = deleted_at
    document.status = "entered-in-error"
    # The index keeps no hint of what the document was.
    document.type_code = None
    document.category_code = None
    document.updated_at = utcnow()
    session.flush()
