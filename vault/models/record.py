from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.models.base import Base, utcnow


class RecordLifecycle(Base):
    """Where a record stands in its lifetime (docs/lifecycle.md): open, closed (kept,
    encrypted, until ``deletion_due_at``) or deleted (crypto-shredded: tombstones only).
    A record that was never closed has no row.

    ``deletion_due_at`` is when the purge job shreds it: the end of the retention period,
    or sooner once the patient asked for early deletion. ``shredded_at`` is when its keys
    were destroyed; ``deleted_at`` when the last of it (the key kept only to tell the
    patient by e-mail that it is done) went too."""

    __tablename__ = "record_lifecycles"
    __table_args__ = (Index("ix_record_lifecycles_due", "status", "deletion_due_at"),)

    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16))
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    retention_until: Mapped[datetime | None] = mapped_column(default=None)
    deletion_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    deletion_due_at: Mapped[datetime | None] = mapped_column(default=None)
    shredded_at: Mapped[datetime | None] = mapped_column(default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    reopened_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Opposition(Base):
    """A person's opposition to the creation of their space: their INS only as the keyed
    blind index the patients table uses (``ins_index``), nothing else about them."""

    __tablename__ = "record_oppositions"

    ins_index: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
