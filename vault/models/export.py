from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from vault.models.base import Base, new_id, utcnow


class RecordExport(Base):
    """One export of a record: who asked (as ``author_of`` names them, never an INS), how
    far its build is, and the key its archive is sealed with while it waits (wrapped by
    the patient's key; the archive itself is a file in the export directory)."""

    __tablename__ = "record_exports"
    __table_args__ = (
        PrimaryKeyConstraint("patient_id", "id"),
        Index("ix_record_exports_patient_requested", "patient_id", "requested_at"),
        Index("ix_record_exports_status", "status", "lease_until"),
    )

    id: Mapped[str] = mapped_column(String(64), default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    requester_role: Mapped[str] = mapped_column(String(32))
    requester_kind: Mapped[str] = mapped_column(String(32))
    requester_id: Mapped[str] = mapped_column(String(128))
    # A representative's own record, if any (their audit entries name it, as requests do).
    requester_record: Mapped[str | None] = mapped_column(String(64), default=None)
    requester_scopes: Mapped[str] = mapped_column(String(1024), default="")
    # The token's issuer: a caregiver account is an account of one issuer.
    requester_issuer: Mapped[str | None] = mapped_column(String(512), default=None)
    # queued -> building -> ready -> expired; or failed.
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[int] = mapped_column(SmallInteger, default=0)
    documents: Mapped[int] = mapped_column(BigInteger, default=0)
    archive_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    wrapped_dek: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    kek_id: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(String(64), default=None)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
