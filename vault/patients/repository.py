"""The only place that builds SQL for patients' records. What it returns is undecided: the
service (vault/patients/service.py) asks access before anything of a record goes out."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from vault.errors import NotFound
from vault.models import Patient


def by_ins_index(session: Session, index: bytes) -> Patient | None:
    return session.scalar(select(Patient).where(Patient.ins_index == index))


def id_by_ins_index(session: Session, index: bytes) -> str | None:
    return session.scalar(select(Patient.id).where(Patient.ins_index == index))


def get(session: Session, patient_id: str) -> Patient | None:
    return session.get(Patient, patient_id)


def add(session: Session, patient: Patient) -> None:
    session.add(patient)
    session.flush()


def require(session: Session, patient_id: str, *, for_update: bool = False) -> Patient:
    """The record, or 404: for what acts on a record's rows, once the caller is decided
    (``for_update``: row-locked until the transaction ends)."""
    patient = (
        session.scalar(select(Patient).where(Patient.id == patient_id).with_for_update())
        if for_update
        else session.get(Patient, patient_id)
    )
    if patient is None:
        raise NotFound("Patient not found")
    return patient
