"""The patient keys' SQL, for the key service and the master keys' retirement."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select, tuple_, update
from sqlalchemy.orm import Session

from vault.models import PatientKey

# Built once: a patient's key is found in the cache only while they are busy, so in a
# national service most writes look it up, and building the statement cost as much as
# running it.
_ACTIVE_KEK = (
    select(PatientKey)
    .where(PatientKey.patient_id == bindparam("patient_id"), PatientKey.retired_at.is_(None))
    .order_by(PatientKey.created_at.desc())
    .limit(1)
)


def active_key(session: Session, patient_id: str) -> PatientKey | None:
    """The patient's newest key that is not retired."""
    return session.scalars(_ACTIVE_KEK, {"patient_id": patient_id}).first()


def rewrap(
    session: Session, patient_id: str, key_id: str, wrapped_key: bytes, master_key_id: str
) -> None:
    session.execute(
        update(PatientKey)
        .where(PatientKey.patient_id == patient_id, PatientKey.id == key_id)
        .values(wrapped_key=wrapped_key, master_key_id=master_key_id)
    )


def keys_not_under(
    session: Session, master_key_id: str, after: tuple[str, str], limit: int
) -> list[tuple[str, str]]:
    """(patient id, key id) of the keys not wrapped by ``master_key_id``, in primary key
    order, after ``after``."""
    return [
        (str(patient_id), str(key_id))
        for patient_id, key_id in session.execute(
            select(PatientKey.patient_id, PatientKey.id)
            .where(
                PatientKey.master_key_id != master_key_id,
                tuple_(PatientKey.patient_id, PatientKey.id) > tuple_(*after),
            )
            .order_by(PatientKey.patient_id, PatientKey.id)
            .limit(limit)
        )
    ]


def count_not_under(session: Session, master_key_id: str) -> int:
    stale = select(func.count()).where(PatientKey.master_key_id != master_key_id)
    return int(session.scalar(stale) or 0)


def master_keys_in_use(session: Session) -> set[str]:
    return set(session.scalars(select(PatientKey.master_key_id).distinct()))
