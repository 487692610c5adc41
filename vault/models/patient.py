from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.models.base import Base, new_id, utcnow


class Patient(Base):
    """A patient's record. The INS itself lives only inside the encrypted resource; the
    clear column is a keyed blind index so that lookups work without storing the NIR."""

    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    # Unique across patients through patient_ins (vault/models/reference.py), which is how
    # a record is found by INS.
    ins_index: Mapped[bytes] = mapped_column(LargeBinary(32))
    version: Mapped[int] = mapped_column(default=1)
    resource_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    resource_dek: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PatientKey(Base):
    """A patient's key-encryption key, wrapped by the key provider's master key."""

    __tablename__ = "patient_keys"
    __table_args__ = (
        PrimaryKeyConstraint("patient_id", "id"),
        Index("ix_patient_keys_patient_active", "patient_id", "retired_at"),
    )

    id: Mapped[str] = mapped_column(String(64), default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)
