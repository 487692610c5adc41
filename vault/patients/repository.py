"""The only place that builds SQL for patients' records. What it returns is undecided: the
service (vault/patients/service.py) asks access before anything of a record goes out."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from vault.models import Patient, PatientIns


# A record is found by INS index through the reference table patient_ins, which holds a
# row for every record, written with it (docs/scaling.md): then by its own key.
def by_ins_index(session: Session, index: bytes) -> Patient | None:
    patient_id = id_by_ins_index(session, index)
    return None if patient_id is None else session.get(Patient, patient_id)


def id_by_ins_index(session: Session, index: bytes) -> str | None:
    return session.scalar(select(PatientIns.patient_id).where(PatientIns.ins_index == index))


def get(session: Session, patient_id: str) -> Patient | None:
    return session.get(Patient, patient_id)


def add(session: Session, patient: Patient) -> None:
    """A new record, and its row in the reference table, in one transaction."""
    session.add(patient)
    session.add(PatientIns(ins_index=patient.ins_index, patient_id=patient.id))
    session.flush()


def lock(session: Session, patient_id: str) -> Patient | None:
    """The record, row-locked until the transaction ends; undecided: for what acts on a
    record's rows once the caller is decided."""
    return session.scalar(select(Patient).where(Patient.id == patient_id).with_for_update())
