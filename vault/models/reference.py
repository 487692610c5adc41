"""Reference tables: identifiers unique across patients, each to the patient that owns it.

A read by a global identifier resolves the patient here first, then reads the
patient-owned table with the patient in its key (docs/scaling.md). Each row is written in
the transaction of the row it indexes. Small, and replicated to every node once the schema
is distributed by patient."""

from __future__ import annotations

from sqlalchemy import Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.models.base import Base


class PatientIns(Base):
    """An INS blind index (``patients.ins_index``) to the record of that person."""

    __tablename__ = "patient_ins"
    __table_args__ = (Index("ix_patient_ins_patient_id", "patient_id"),)

    ins_index: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64))


class ResourcePatient(Base):
    """A document's, binary's or SubmissionSet's id to its patient."""

    __tablename__ = "resource_patients"

    # "document", "binary" or "submission-set".
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64))


class InvitationCode(Base):
    """A caregiver invitation's code hash to the invitation and its patient."""

    __tablename__ = "invitation_codes"

    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    invitation_id: Mapped[str] = mapped_column(String(64))
