"""The SQL of a document's write path, in Core statements.

A new document's rows are only ever inserted whole, so they skip the ORM's unit of work,
which cost more CPU than all the rest of a document's write (docs/performance.md). On
PostgreSQL one statement inserts a document's binary, document and version rows, and those of
up to ten documents of a submission.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Insert, Table, bindparam, insert, select
from sqlalchemy.orm import Session

from vault.models import Binary, Document, DocumentVersion, ResourcePatient

_BINARIES = cast(Table, Binary.__table__)
_DOCUMENTS = cast(Table, Document.__table__)
_VERSIONS = cast(Table, DocumentVersion.__table__)
# The reference table that finds a document's or binary's patient by its id alone
# (docs/scaling.md), written with the rows it indexes.
_OWNERS = cast(Table, ResourcePatient.__table__)

Row = dict[str, Any]

# Built once: building a statement costs as much CPU as executing it (docs/performance.md).
# A masterIdentifier names a document among one sender's documents for one patient only
# (docs/lifecycle.md), so every lookup names the patient and the sender.
_SAME_SENDER = (
    (_DOCUMENTS.c.patient_id == bindparam("patient_id"))
    & (_DOCUMENTS.c.author_kind == bindparam("author_kind"))
    & (_DOCUMENTS.c.author_id == bindparam("author_id"))
)
_BY_MASTER_IDENTIFIER = select(_DOCUMENTS.c.id).where(
    _SAME_SENDER, _DOCUMENTS.c.master_identifier == bindparam("master")
)
_BY_MASTER_IDENTIFIERS = select(_DOCUMENTS.c.master_identifier, _DOCUMENTS.c.id).where(
    _SAME_SENDER, _DOCUMENTS.c.master_identifier.in_(bindparam("masters", expanding=True))
)


def binary_row(
    *,
    binary_id: str,
    document_id: str,
    patient_id: str,
    content_type: str,
    size: int,
    blob_key: str,
    segment_size: int,
    wrapped_dek: bytes,
    kek_id: str,
    created_at: datetime,
) -> Row:
    """A new document's binary row: the document service's and the benchmark loader's
    (vault/bench/store.py) one way to spell it."""
    return {
        "id": binary_id,
        "document_id": document_id,
        "patient_id": patient_id,
        "content_type": content_type,
        "size": size,
        "blob_key": blob_key,
        "segment_size": segment_size,
        "wrapped_dek": wrapped_dek,
        "kek_id": kek_id,
        "created_at": created_at,
        "shredded_at": None,
    }


def document_row(
    *,
    document_id: str,
    patient_id: str,
    master_identifier: str | None,
    type_code: str | None,
    category_code: str | None,
    date: datetime | None,
    security_labels: str,
    author_kind: str,
    author_id: str,
    content_fingerprint: bytes,
    created_at: datetime,
) -> Row:
    """A new document's row, at its first version."""
    return {
        "id": document_id,
        "patient_id": patient_id,
        "master_identifier": master_identifier,
        "current_version": 1,
        "status": "current",
        "type_code": type_code,
        "category_code": category_code,
        "date": date,
        "security_labels": security_labels,
        "author_kind": author_kind,
        "author_id": author_id,
        "content_fingerprint": content_fingerprint,
        "deleted_at": None,
        "created_at": created_at,
        "updated_at": created_at,
    }


def version_row(
    *,
    document_id: str,
    version: int,
    patient_id: str,
    status: str,
    security_labels: str,
    binary_id: str,
    resource_ciphertext: bytes,
    resource_dek: bytes,
    kek_id: str,
    created_by_role: str,
    created_by: str,
    created_at: datetime,
) -> Row:
    """A document version's row: its metadata resource sealed, who made it."""
    return {
        "document_id": document_id,
        "version": version,
        "patient_id": patient_id,
        "status": status,
        "security_labels": security_labels,
        "binary_id": binary_id,
        "resource_ciphertext": resource_ciphertext,
        "resource_dek": resource_dek,
        "kek_id": kek_id,
        "created_by_role": created_by_role,
        "created_by": created_by,
        "created_at": created_at,
    }


@dataclass(frozen=True)
class Sender:
    """Whose documents a masterIdentifier is unique among: one patient's, from one author."""

    patient_id: str
    author_kind: str
    author_id: str

    def params(self) -> dict[str, str]:
        return {
            "patient_id": self.patient_id,
            "author_kind": self.author_kind,
            "author_id": self.author_id,
        }


@dataclass
class NewRows:
    """Rows of new documents waiting to be inserted, by table."""

    binaries: list[Row] = field(default_factory=list)
    documents: list[Row] = field(default_factory=list)
    versions: list[Row] = field(default_factory=list)
    # The stored documents' ids by masterIdentifier, when looked up beforehand for all
    # the documents to come (None: look each one up).
    existing: dict[str, str] | None = None

    @classmethod
    def for_documents(
        cls, session: Session, sender: Sender, master_identifiers: list[str]
    ) -> NewRows:
        """For a submission's documents: which of them the sender already stored for the
        patient, in one query."""
        found = session.execute(
            _BY_MASTER_IDENTIFIERS, {**sender.params(), "masters": master_identifiers}
        )
        return cls(existing={str(master): str(document_id) for master, document_id in found})

    def existing_id(self, session: Session, sender: Sender, master_identifier: str) -> str | None:
        if self.existing is not None:
            return self.existing.get(master_identifier)
        return id_by_master_identifier(session, sender, master_identifier)

    def insert(self, session: Session) -> None:
        # Rows the ORM still holds (a new patient and its key) go first: these reference them.
        session.flush()
        if session.get_bind().dialect.name == "postgresql":
            for start in range(0, len(self.documents), _TOGETHER):
                _insert_together(
                    session,
                    self.binaries[start : start + _TOGETHER],
                    self.documents[start : start + _TOGETHER],
                    self.versions[start : start + _TOGETHER],
                )
        else:
            # Foreign-key order: a version references its document and its binary.
            for table, rows in (
                (_BINARIES, self.binaries),
                (_DOCUMENTS, self.documents),
                (_VERSIONS, self.versions),
                (_OWNERS, owner_rows(self.binaries, self.documents)),
            ):
                if rows:
                    session.execute(insert(table), rows)
        self.binaries.clear()
        self.documents.clear()
        self.versions.clear()


# Documents per statement: few distinct statements to compile and cache, and parameters far
# below PostgreSQL's limit of 65535 per statement.
_TOGETHER = 10


def _insert_together(
    session: Session, binaries: list[Row], documents: list[Row], versions: list[Row]
) -> None:
    """The three tables' rows in one statement, its inserts as data-modifying CTEs: one
    round trip instead of three, and PostgreSQL checks the versions' foreign keys at the
    statement's end, when their documents and binaries are in."""
    owners = owner_rows(binaries, documents)
    parts = (
        ("b", _BINARIES, binaries),
        ("d", _DOCUMENTS, documents),
        ("v", _VERSIONS, versions),
        ("o", _OWNERS, owners),
    )
    params = {
        f"{prefix}{n}_{name}": value
        for prefix, _, rows in parts
        for n, row in enumerate(rows)
        for name, value in row.items()
    }
    statement = _together(
        len(documents), tuple(binaries[0]), tuple(documents[0]), tuple(versions[0])
    )
    session.execute(statement, params)


@functools.lru_cache(maxsize=4 * _TOGETHER)
def _together(
    count: int, binary: tuple[str, ...], document: tuple[str, ...], version: tuple[str, ...]
) -> Insert:
    # One single-row INSERT per row: SQLAlchemy caches the compiled form of those, not of
    # a multi-row VALUES.
    def row(prefix: str, table: Table, names: tuple[str, ...], n: int) -> Insert:
        return insert(table).values(
            {name: bindparam(f"{prefix}{n}_{name}", type_=table.c[name].type) for name in names}
        )

    ctes = [row("b", _BINARIES, binary, n).cte(f"new_binary_{n}") for n in range(count)]
    ctes += [row("d", _DOCUMENTS, document, n).cte(f"new_document_{n}") for n in range(count)]
    ctes += [row("v", _VERSIONS, version, n).cte(f"new_version_{n}") for n in range(1, count)]
    owner = ("kind", "resource_id", "patient_id")
    ctes += [row("o", _OWNERS, owner, n).cte(f"new_owner_{n}") for n in range(2 * count)]
    return row("v", _VERSIONS, version, 0).add_cte(*ctes)


def owner_rows(binaries: list[Row], documents: list[Row]) -> list[Row]:
    """Each binary's and document's resource_patients row: binaries first, then documents
    (the service's and the benchmark loader's alike)."""
    return [
        {"kind": kind, "resource_id": row["id"], "patient_id": row["patient_id"]}
        for kind, rows in (("binary", binaries), ("document", documents))
        for row in rows
    ]


def insert_version(session: Session, row: Row) -> None:
    session.flush()
    session.execute(insert(_VERSIONS), [row])


def id_by_master_identifier(session: Session, sender: Sender, master_identifier: str) -> str | None:
    found = session.execute(
        _BY_MASTER_IDENTIFIER, {**sender.params(), "master": master_identifier}
    ).scalar()
    return None if found is None else str(found)
