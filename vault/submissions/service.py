"""SubmissionSets are kept, encrypted under the patient's keys like every other resource,
so that the ``List/{id}`` an ITI-65 response names can be read back.

A SubmissionSet says which documents were submitted together, by whom and when: whoever
reads it learns that much of each document. So it is readable by those who may read every
document it lists, and by no one else.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vault.access.permissions import Permission
from vault.access.policy import Actor, author_of
from vault.access.service import AccessService
from vault.db import Session
from vault.documents import repository as documents
from vault.errors import Conflict, InvalidResource
from vault.models.base import new_id, utcnow
from vault.storage import crypto
from vault.storage.envelope import Envelope
from vault.submissions import repository

MAX_UNIQUE_ID = 512


def list_context(submission_set_id: str, patient_id: str) -> bytes:
    return crypto.associated_data("List", submission_set_id, patient_id)


@dataclass(frozen=True)
class StoredSubmissionSet:
    id: str
    created: bool
    last_updated: str


def unique_id_of(resource: dict[str, Any]) -> str | None:
    """MHD maps the XDS uniqueId to the identifier with use ``official``."""
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("use") == "official":
            value = identifier.get("value")
            return str(value) if value else None
    return None


class SubmissionSetService:
    def __init__(self, access: AccessService, envelope: Envelope) -> None:
        self.access = access
        self.envelope = envelope

    def record(
        self,
        session: Session,
        actor: Actor,
        resource: dict[str, Any],
        patient_id: str,
        document_ids: Sequence[str],
        *,
        retried: bool,
    ) -> StoredSubmissionSet:
        """Keep the SubmissionSet of a submission whose documents are stored.
        ``document_ids`` follow ``List.entry``. A retried submission (every document was
        already there) gets back the SubmissionSet stored the first time."""
        if retried:
            existing = repository.listing_exactly(session, patient_id, document_ids)
            if existing is not None:
                return StoredSubmissionSet(existing.id, False, existing.created_at.isoformat())
        unique_id = unique_id_of(resource)
        if unique_id is not None and len(unique_id) > MAX_UNIQUE_ID:
            raise InvalidResource(
                f"The SubmissionSet's uniqueId is longer than {MAX_UNIQUE_ID} characters",
                expression="List.identifier",
            )
        role, by = author_of(actor)
        if (
            unique_id is not None
            and repository.by_unique_id(session, patient_id, (role, by), unique_id) is not None
        ):
            # Only the sender's own submissions for this patient can conflict: the answer
            # tells no one of another's.
            raise Conflict("A different submission was already made under this uniqueId")
        submission_set_id = new_id()
        now = utcnow()
        stored = copy.deepcopy(resource)
        stored["id"] = submission_set_id
        stored["meta"] = {
            **(stored.get("meta") or {}),
            "versionId": "1",
            "lastUpdated": now.isoformat(),
        }
        stored["subject"] = {"reference": f"Patient/{patient_id}"}
        for entry, document_id in zip(stored.get("entry") or [], document_ids, strict=True):
            entry["item"] = {"reference": f"DocumentReference/{document_id}"}
        sealed = self.envelope.seal_json(
            session, patient_id, stored, list_context(submission_set_id, patient_id)
        )
        repository.insert(
            session,
            {
                "id": submission_set_id,
                "patient_id": patient_id,
                "unique_id": unique_id,
                "resource_ciphertext": sealed.ciphertext,
                "resource_dek": sealed.wrapped_dek,
                "kek_id": sealed.kek_id,
                "submitted_by_role": role,
                "submitted_by": by,
                "created_at": now,
            },
            # A document listed twice is one member.
            [
                {"submission_set_id": submission_set_id, "document_id": document_id, "position": n}
                for n, document_id in enumerate(dict.fromkeys(document_ids))
            ],
        )
        return StoredSubmissionSet(submission_set_id, True, now.isoformat())

    def read(self, session: Session, actor: Actor, submission_set_id: str) -> dict[str, Any]:
        row, members = repository.with_members(session, submission_set_id)
        if row is None or not members:
            # Deny by default: a SubmissionSet is readable through its documents only. What
            # does not exist is refused as another's is, at the same cost.
            raise self.access.refuse_unknown(
                session,
                actor,
                Permission.DOCUMENT_READ,
                about_document=True,
                resource_type="List",
                resource_id=submission_set_id,
                not_found_as="List",
            )
        for document in members:
            self.access.authorize(
                session,
                actor,
                Permission.DOCUMENT_READ,
                row.patient_id,
                document=documents.facts(document),
                resource_type="List",
                resource_id=row.id,
                detail={"document": document.id},
                not_found_as="List",
            )
        return self.envelope.open_json(
            session,
            row.patient_id,
            row.resource_ciphertext,
            row.resource_dek,
            row.kek_id,
            list_context(row.id, row.patient_id),
        )
