from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from vault.models.base import Base, new_id, utcnow


class Document(Base):
    """One logical document. The searchable fields of its current version are copied here
    (in clear, see docs/data-model.md) so that searches touch one table and one index."""

    __tablename__ = "documents"
    __table_args__ = (
        # Led by the patient, as every patient-owned table's (vault/models/sharding.py).
        PrimaryKeyConstraint("patient_id", "id"),
        Index("ix_documents_patient_created", "patient_id", "created_at", "id"),
        # Unique per patient and per sender (docs/lifecycle.md): a global key would tell a
        # caller that someone else's document exists, and let one claim a laboratory's
        # predictable identifier first so that its push fails.
        UniqueConstraint(
            "patient_id",
            "author_kind",
            "author_id",
            "master_identifier",
            name="uq_documents_patient_sender_master_identifier",
        ),
        # A reader who sees only what they authored pages through this one.
        Index("ix_documents_patient_author_created", "patient_id", "author_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    master_identifier: Mapped[str] = mapped_column(String(512))
    current_version: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(32))
    type_code: Mapped[str | None] = mapped_column(String(256), default=None)
    category_code: Mapped[str | None] = mapped_column(String(256), default=None)
    date: Mapped[datetime | None] = mapped_column(default=None)
    # "space-separated, space-delimited" so a label test is one LIKE on both backends.
    security_labels: Mapped[str] = mapped_column(String(512), default=" ")
    author_kind: Mapped[str] = mapped_column(String(32))
    author_id: Mapped[str] = mapped_column(String(128), index=True)
    # Keyed fingerprint of the content, for idempotent retries; not a plain hash, which
    # would let anyone holding a candidate file confirm it is in the store.
    content_fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DocumentVersion(Base):
    """Each version's full DocumentReference, encrypted under its own data key."""

    __tablename__ = "document_versions"
    __table_args__ = (
        PrimaryKeyConstraint("patient_id", "document_id", "version"),
        ForeignKeyConstraint(
            ["patient_id", "document_id"],
            ["documents.patient_id", "documents.id"],
            ondelete="RESTRICT",
            name="fk_document_versions_document_documents",
        ),
        ForeignKeyConstraint(
            ["patient_id", "binary_id"],
            ["binaries.patient_id", "binaries.id"],
            ondelete="RESTRICT",
            name="fk_document_versions_binary_binaries",
        ),
    )

    document_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    patient_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    security_labels: Mapped[str] = mapped_column(String(512), default=" ")
    binary_id: Mapped[str] = mapped_column(String(64))
    resource_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    # NULL once crypto-shredded.
    resource_dek: Mapped[bytes | None] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(64))
    created_by_role: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Binary(Base):
    """A document's content: ciphertext in the blob store, its wrapped data key here."""

    __tablename__ = "binaries"
    __table_args__ = (
        PrimaryKeyConstraint("patient_id", "id"),
        ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        UniqueConstraint("patient_id", "blob_key", name="uq_binaries_patient_blob_key"),
        # The blob sweep asks which stored blobs are still needed, by key.
        Index("ix_binaries_blob_key", "blob_key"),
    )

    id: Mapped[str] = mapped_column(String(64), default=new_id)
    document_id: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int]
    blob_key: Mapped[str] = mapped_column(String(255))
    segment_size: Mapped[int]
    # NULL once crypto-shredded.
    wrapped_dek: Mapped[bytes | None] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    shredded_at: Mapped[datetime | None] = mapped_column(default=None)


class StoredBlobChunk(Base):
    """Ciphertext kept in the database by the ``db:`` blob store, in chunks so that a large
    document streams out without being loaded whole."""

    __tablename__ = "blob_chunks"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    chunk_index: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
