"""The only place that builds SQL for SubmissionSets."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from vault.models import Document, SubmissionSet, SubmissionSetMember


def get(session: Session, submission_set_id: str) -> SubmissionSet | None:
    return session.get(SubmissionSet, submission_set_id)


def by_unique_id(session: Session, unique_id: str) -> SubmissionSet | None:
    return session.scalar(select(SubmissionSet).where(SubmissionSet.unique_id == unique_id))


def members(session: Session, submission_set_id: str) -> Sequence[Document]:
    return session.scalars(
        select(Document)
        .join(SubmissionSetMember, SubmissionSetMember.document_id == Document.id)
        .where(SubmissionSetMember.submission_set_id == submission_set_id)
        .order_by(SubmissionSetMember.position)
    ).all()


def listing_exactly(
    session: Session, patient_id: str, document_ids: Sequence[str]
) -> SubmissionSet | None:
    """The patient's SubmissionSet whose documents are exactly these, if there is one."""
    wanted = set(document_ids)
    candidates = session.scalars(
        select(SubmissionSet)
        .join(SubmissionSetMember, SubmissionSetMember.submission_set_id == SubmissionSet.id)
        .where(
            SubmissionSet.patient_id == patient_id,
            SubmissionSetMember.document_id == document_ids[0],
        )
        .order_by(SubmissionSet.created_at)
    ).all()
    for candidate in candidates:
        listed = session.scalars(
            select(SubmissionSetMember.document_id).where(
                SubmissionSetMember.submission_set_id == candidate.id
            )
        ).all()
        if set(listed) == wanted:
            return candidate
    return None
