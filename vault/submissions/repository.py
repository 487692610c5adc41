"""The only place that builds SQL for SubmissionSets."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Insert, Table, bindparam, select
from sqlalchemy import insert as sql_insert
from sqlalchemy.orm import Session

from vault.documents import repository as documents
from vault.models import Document, ResourcePatient, SubmissionSet, SubmissionSetMember

_SETS = cast(Table, SubmissionSet.__table__)
_MEMBERS = cast(Table, SubmissionSetMember.__table__)
_OWNERS = cast(Table, ResourcePatient.__table__)
# A SubmissionSet's kind in resource_patients.
SUBMISSION_SET = "submission-set"


def with_members(
    session: Session, submission_set_id: str
) -> tuple[SubmissionSet | None, Sequence[Document]]:
    """A SubmissionSet by id and its documents, in list order: its patient from the
    reference table, then the patient's rows. One that does not exist runs the same
    statements on a patient no row has, so that it costs what another patient's does
    (tests/hardening/test_timing_oracles.py)."""
    patient_id = (
        documents.patient_of(session, SUBMISSION_SET, submission_set_id) or documents.NO_PATIENT
    )
    row = session.get(SubmissionSet, {"patient_id": patient_id, "id": submission_set_id})
    return row, _members(session, patient_id, submission_set_id)


def by_unique_id(
    session: Session, patient_id: str, submitted_by: tuple[str, str], unique_id: str
) -> SubmissionSet | None:
    """The sender's SubmissionSet for this patient under this uniqueId: the scope its
    uniqueness has (docs/lifecycle.md)."""
    role, by = submitted_by
    return session.scalar(
        select(SubmissionSet).where(
            SubmissionSet.patient_id == patient_id,
            SubmissionSet.submitted_by_role == role,
            SubmissionSet.submitted_by == by,
            SubmissionSet.unique_id == unique_id,
        )
    )


def _members(session: Session, patient_id: str, submission_set_id: str) -> Sequence[Document]:
    return session.scalars(
        select(Document)
        .join(
            SubmissionSetMember,
            (SubmissionSetMember.patient_id == Document.patient_id)
            & (SubmissionSetMember.document_id == Document.id),
        )
        .where(
            SubmissionSetMember.patient_id == patient_id,
            SubmissionSetMember.submission_set_id == submission_set_id,
        )
        .order_by(SubmissionSetMember.position)
    ).all()


def listing_exactly(
    session: Session, patient_id: str, document_ids: Sequence[str]
) -> SubmissionSet | None:
    """The patient's SubmissionSet whose documents are exactly these, if there is one."""
    wanted = set(document_ids)
    candidates = session.scalars(
        select(SubmissionSet)
        .join(
            SubmissionSetMember,
            (SubmissionSetMember.patient_id == SubmissionSet.patient_id)
            & (SubmissionSetMember.submission_set_id == SubmissionSet.id),
        )
        .where(
            SubmissionSet.patient_id == patient_id,
            SubmissionSetMember.patient_id == patient_id,
            SubmissionSetMember.document_id == document_ids[0],
        )
        .order_by(SubmissionSet.created_at)
    ).all()
    for candidate in candidates:
        listed = session.scalars(
            select(SubmissionSetMember.document_id).where(
                SubmissionSetMember.patient_id == patient_id,
                SubmissionSetMember.submission_set_id == candidate.id,
            )
        ).all()
        if set(listed) == wanted:
            return candidate
    return None


def insert(session: Session, submission_set: dict[str, Any], members: list[dict[str, Any]]) -> None:
    """A new SubmissionSet and its members, in Core statements: they are only ever inserted
    whole, and the ORM's unit of work would cost more than the rest of the write."""
    # Rows the ORM still holds go first: these reference the patient and the documents.
    session.flush()
    patient_id = submission_set["patient_id"]
    members = [{**member, "patient_id": patient_id} for member in members]
    # The reference table finds the List's patient by its id (docs/scaling.md).
    owner = {"kind": SUBMISSION_SET, "resource_id": submission_set["id"], "patient_id": patient_id}
    if session.get_bind().dialect.name == "postgresql" and 0 < len(members) <= _TOGETHER:
        # One statement, the List's row as a data-modifying CTE: PostgreSQL checks the
        # members' foreign keys at its end, when the List is in.
        params = {f"s_{name}": value for name, value in submission_set.items()}
        params.update({f"o_{name}": value for name, value in owner.items()})
        for n, member in enumerate(members):
            params.update({f"m{n}_{name}": value for name, value in member.items()})
        session.execute(_together(len(members), tuple(submission_set), tuple(members[0])), params)
        return
    session.execute(sql_insert(_SETS), [submission_set])
    session.execute(sql_insert(_OWNERS), [owner])
    if members:
        session.execute(sql_insert(_MEMBERS), members)


# Members inserted with their List in one statement: few distinct statements to cache.
_TOGETHER = 10


@functools.lru_cache(maxsize=2 * _TOGETHER)
def _together(count: int, submission_set: tuple[str, ...], member: tuple[str, ...]) -> Insert:
    # One single-row INSERT per row: SQLAlchemy caches the compiled form of those, not of
    # a multi-row VALUES.
    def row(table: Table, names: tuple[str, ...], prefix: str) -> Insert:
        return sql_insert(table).values(
            {name: bindparam(f"{prefix}{name}", type_=table.c[name].type) for name in names}
        )

    ctes = [row(_SETS, submission_set, "s_").cte("new_submission_set")]
    ctes += [row(_OWNERS, ("kind", "resource_id", "patient_id"), "o_").cte("new_owner")]
    ctes += [row(_MEMBERS, member, f"m{n}_").cte(f"new_member_{n}") for n in range(1, count)]
    return row(_MEMBERS, member, "m0_").add_cte(*ctes)
