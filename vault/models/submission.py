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


class SubmissionSet(Base):
    """An ITI-65 SubmissionSet (a List), kept so that the Location the transaction returned
    for it can be read back. The List itself is encrypted like every other resource."""

    __tablename__ = "submission_sets"
    __table_args__ = (
        PrimaryKeyConstraint("patient_id", "id"),
        # Per patient and per sender, as a document's masterIdentifier (docs/lifecycle.md).
        UniqueConstraint(
            "patient_id",
            "submitted_by_role",
            "submitted_by",
            "unique_id",
            name="uq_submission_sets_patient_sender_unique_id",
        ),
    )

    id: Mapped[str] = mapped_column(String(64), default=new_id)
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), index=True
    )
    # The XDS uniqueId (the identifier with use "official"), when the sender gave one.
    unique_id: Mapped[str | None] = mapped_column(String(512), default=None)
    resource_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    resource_dek: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(64))
    submitted_by_role: Mapped[str] = mapped_column(String(32))
    submitted_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SubmissionSetMember(Base):
    """Which documents a SubmissionSet lists: reading it is allowed to whoever may read
    every one of them."""

    __tablename__ = "submission_set_members"
    __table_args__ = (
        PrimaryKeyConstraint("patient_id", "submission_set_id", "document_id"),
        ForeignKeyConstraint(
            ["patient_id", "submission_set_id"],
            ["submission_sets.patient_id", "submission_sets.id"],
            ondelete="RESTRICT",
            name="fk_submission_set_members_set_submission_sets",
        ),
        ForeignKeyConstraint(
            ["patient_id", "document_id"],
            ["documents.patient_id", "documents.id"],
            ondelete="RESTRICT",
            name="fk_submission_set_members_document_documents",
        ),
        Index("ix_submission_set_members_patient_document", "patient_id", "document_id"),
    )

    patient_id: Mapped[str] = mapped_column(String(64))
    submission_set_id: Mapped[str] = mapped_column(String(64))
    document_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int]
