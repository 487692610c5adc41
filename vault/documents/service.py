"""Documents: create, read, content, metadata update, replace and delete.

Each version's DocumentReference is sealed under its own data key; the content is sealed
once, in segments, under the binary's data key. The associated data of both names the
record (document, version or binary, and patient).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import uuid4

from vault.access.permissions import Permission
from vault.access.policy import Actor, DocumentFacts, author_of
from vault.access.service import AccessService
from vault.access.state import MetadataChange
from vault.db import Session
from vault.documents import repository
from vault.documents.metadata import (
    DOCUMENT_STATUSES,
    DocumentMetadata,
    security_label_codes,
    sha1_base64,
)
from vault.documents.patch import Operation, changes_for
from vault.documents.repository import SealedVersion
from vault.documents.repository import rows as rows_sql
from vault.documents.repository.rows import NewRows, Sender
from vault.errors import Conflict, Gone, InvalidResource, NotFound, PreconditionFailed
from vault.fhir.validate import validate_resource
from vault.models import Document, DocumentVersion
from vault.models.base import new_id, utcnow
from vault.observability import metrics
from vault.storage import crypto
from vault.storage.blobs.base import BlobStore
from vault.storage.envelope import Envelope
from vault.storage.keys.provider import KeyProvider


def version_context(document_id: str, version: int, patient_id: str) -> bytes:
    return crypto.associated_data("DocumentReference", document_id, version, patient_id)


def binary_context(binary_id: str, document_id: str, patient_id: str) -> bytes:
    return crypto.associated_data("Binary", binary_id, document_id, patient_id)


# A document's status only moves forward: a superseded document does not become current
# again (its replacement is), and entered-in-error is final.
STATUS_CHANGES = frozenset(
    {
        ("current", "superseded"),
        ("current", "entered-in-error"),
        ("superseded", "entered-in-error"),
    }
)


@dataclass
class NewDocument:
    resource: dict[str, Any]
    metadata: DocumentMetadata
    content: bytes
    patient_id: str
    replaces: str | None = None


@dataclass
class StoredDocument:
    id: str
    version: int
    binary_id: str
    created: bool
    last_updated: datetime
    resource: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class Content:
    content_type: str
    size: int
    chunks: Iterator[bytes]


def sender_of(actor: Actor, patient_id: str) -> Sender:
    """The scope of the masterIdentifiers this actor sends for this patient: the author
    their documents are recorded under."""
    return Sender(patient_id, *author_of(actor))


class DocumentService:
    def __init__(
        self, access: AccessService, envelope: Envelope, blobs: BlobStore, keys: KeyProvider
    ) -> None:
        self.access = access
        self.envelope = envelope
        self.blobs = blobs
        self._keys = keys

    # -- create ---------------------------------------------------------------------

    def create(
        self, session: Session, actor: Actor, new: NewDocument, rows: NewRows | None = None
    ) -> StoredDocument:
        """Store a new document, or return the one a retry names. Its rows are inserted
        before this returns, or, given ``rows``, added there for the caller to insert
        (a submission inserts its documents' rows together)."""
        pending = rows if rows is not None else NewRows()
        existing_id = pending.existing_id(
            session, sender_of(actor, new.patient_id), new.metadata.master_identifier
        )
        existing = (
            repository.get_unchecked(session, existing_id, new.patient_id)
            if existing_id is not None
            else None
        )
        # The entry names the document created, or the one a retry gets back. (A concurrent
        # twin of the same sender not yet committed is not seen here: its unique index
        # refuses this insert, 409.)
        document_id = existing.id if existing is not None else new_id()
        self.access.authorize(
            session,
            actor,
            Permission.DOCUMENT_CREATE,
            new.patient_id,
            # A caregiver's delegation covers uploads of some categories only.
            document=_new_facts(actor, new),
            resource_type="DocumentReference",
            resource_id=document_id,
            detail={"retry": "true"} if existing is not None else None,
        )
        if existing is not None:
            fingerprint = self._keys.blind_index("content", new.content)
            return self._retry(session, actor, existing, new, fingerprint)
        if new.metadata.status != "current":
            raise InvalidResource(
                "A new document's status must be current", expression="DocumentReference.status"
            )

        fingerprint = self._keys.blind_index("content", new.content)
        binary_id = new_id()
        now = utcnow()
        if new.replaces is not None:
            self._supersede(session, actor, new.replaces, new.patient_id, document_id)

        sealed_content = self.envelope.seal_content(
            session,
            new.patient_id,
            new.content,
            binary_context(binary_id, document_id, new.patient_id),
        )
        blob_key = uuid4().hex
        self.blobs.put(session, blob_key, sealed_content.chunks)
        author_kind, author_id = author_of(actor)
        pending.binaries.append(
            rows_sql.binary_row(
                binary_id=binary_id,
                document_id=document_id,
                patient_id=new.patient_id,
                content_type=new.metadata.content_type,
                size=len(new.content),
                blob_key=blob_key,
                segment_size=sealed_content.segment_size,
                wrapped_dek=sealed_content.wrapped_dek,
                kek_id=sealed_content.kek_id,
                created_at=now,
            )
        )
        resource = self._stored_resource(new, document_id, binary_id, now)
        pending.documents.append(
            rows_sql.document_row(
                document_id=document_id,
                patient_id=new.patient_id,
                master_identifier=new.metadata.master_identifier,
                type_code=new.metadata.type_code,
                category_code=new.metadata.category_code,
                date=new.metadata.date,
                security_labels=repository.labels_text(new.metadata.security_labels),
                author_kind=author_kind,
                author_id=author_id,
                content_fingerprint=fingerprint,
                created_at=now,
            )
        )
        pending.versions.append(
            self._version_row(
                session, actor, document_id, 1, new.patient_id, resource, binary_id, now
            )
        )
        if rows is None:
            pending.insert(session)
        metrics.document_ingested(session)
        return StoredDocument(
            document_id, 1, binary_id, True, now, resource, list(new.metadata.warnings)
        )

    def _retry(
        self,
        session: Session,
        actor: Actor,
        existing: Document,
        new: NewDocument,
        fingerprint: bytes,
    ) -> StoredDocument:
        """The same submission again (a client retrying after a lost response) returns
        what was stored; anything else under the same masterIdentifier is a conflict.

        ``existing`` is the sender's own document for this patient (identifiers are unique
        per patient and sender), so the conflict tells them only of what they sent; still,
        only a caller who may read it now gets it back.
        """
        same = (
            existing.patient_id == new.patient_id
            and existing.content_fingerprint == fingerprint
            and existing.deleted_at is None
            and bool(
                self.access.check(
                    actor, Permission.DOCUMENT_READ, existing.patient_id, repository.facts(existing)
                )
            )
        )
        current = (
            repository.version(session, existing.patient_id, existing.id, existing.current_version)
            if same
            else None
        )
        if current is None:
            raise Conflict("A different document was already submitted with this masterIdentifier")
        resource = self._decrypt_version(session, current)
        return StoredDocument(
            existing.id,
            existing.current_version,
            current.binary_id,
            False,
            existing.updated_at,
            resource,
            list(new.metadata.warnings),
        )

    def _stored_resource(
        self, new: NewDocument, document_id: str, binary_id: str, now: datetime
    ) -> dict[str, Any]:
        resource = copy.deepcopy(new.resource)
        resource["id"] = document_id
        resource["meta"] = {
            **(resource.get("meta") or {}),
            "versionId": "1",
            "lastUpdated": now.isoformat(),
        }
        resource["subject"] = {"reference": f"Patient/{new.patient_id}"}
        attachment = resource["content"][0]["attachment"]
        attachment.pop("data", None)
        attachment["url"] = f"Binary/{binary_id}"
        attachment["size"] = len(new.content)
        attachment["hash"] = sha1_base64(new.content, new.metadata.content_sha1)
        if new.replaces is not None:
            for relation in resource.get("relatesTo") or []:
                if relation.get("code") == "replaces":
                    relation["target"] = {"reference": f"DocumentReference/{new.replaces}"}
        return resource

    def _version_row(
        self,
        session: Session,
        actor: Actor,
        document_id: str,
        number: int,
        patient_id: str,
        resource: dict[str, Any],
        binary_id: str,
        now: datetime,
    ) -> rows_sql.Row:
        sealed = self.envelope.seal_json(
            session, patient_id, resource, version_context(document_id, number, patient_id)
        )
        role, by = author_of(actor)
        return rows_sql.version_row(
            document_id=document_id,
            version=number,
            patient_id=patient_id,
            status=str(resource.get("status")),
            security_labels=repository.labels_text(security_label_codes(resource)),
            binary_id=binary_id,
            resource_ciphertext=sealed.ciphertext,
            resource_dek=sealed.wrapped_dek,
            kek_id=sealed.kek_id,
            created_by_role=role,
            created_by=by,
            created_at=now,
        )

    def _supersede(
        self, session: Session, actor: Actor, target_id: str, patient_id: str, replacement_id: str
    ) -> None:
        target = repository.get_for_update(session, target_id)
        if target is None:
            # Worded as the refusal below is, so a replacement cannot probe for documents.
            raise NotFound("Replaced document not found")
        # Another patient's document is refused by the policy (its patient differs).
        self.access.authorize(
            session,
            actor,
            Permission.DOCUMENT_UPDATE,
            patient_id,
            document=repository.facts(target),
            resource_type="DocumentReference",
            resource_id=target.id,
            detail={"change": "superseded", "by": replacement_id},
            not_found_as="Replaced document",
        )
        if target.deleted_at is not None or target.status != "current":
            raise Conflict("The document to replace is no longer current")
        self._new_version(session, actor, target, {"status": "superseded"})

    # -- read -------------------------------------------------------------------------

    def _guarded(
        self,
        session: Session,
        actor: Actor,
        document_id: str,
        permission: Permission,
        *,
        for_update: bool = False,
        detail: dict[str, str] | None = None,
    ) -> Document:
        """Load a document and authorize the action on it in one step; what may not be
        seen answers exactly like what does not exist."""
        load = repository.get_for_update if for_update else repository.get_unchecked
        document = load(session, document_id)
        if document is None:
            raise self.access.refuse_unknown(
                session,
                actor,
                permission,
                about_document=True,
                resource_type="DocumentReference",
                resource_id=document_id,
                detail=detail,
                not_found_as="DocumentReference",
            )
        self.access.authorize(
            session,
            actor,
            permission,
            document.patient_id,
            document=repository.facts(document),
            resource_type="DocumentReference",
            resource_id=document.id,
            detail=detail,
            not_found_as="DocumentReference",
        )
        return document

    def read(
        self, session: Session, actor: Actor, document_id: str, version: int | None = None
    ) -> dict[str, Any]:
        return self.read_with_row(session, actor, document_id, version)[1]

    def read_with_row(
        self, session: Session, actor: Actor, document_id: str, version: int | None = None
    ) -> tuple[Document, dict[str, Any]]:
        """``read``, with the document's row (its access facts and dates, for a listing)."""
        document = self._guarded(session, actor, document_id, Permission.DOCUMENT_READ)
        if document.deleted_at is not None:
            raise Gone("This document was deleted")
        number = version or document.current_version
        row = repository.version(session, document.patient_id, document.id, number)
        if row is None:
            raise NotFound("DocumentReference version not found")
        return document, self._decrypt_version(session, row)

    @staticmethod
    def patient_of(session: Session, document_id: str) -> str | None:
        """Whose record a document is in, if it exists; nothing else of it."""
        document = repository.get_unchecked(session, document_id)
        return document.patient_id if document is not None else None

    def readable(self, session: Session, actor: Actor, document_id: str) -> Document | None:
        """The row of a live document the actor may read, decided without recording (the
        caller then reads it through ``read``, which records); None for one that does not
        exist, was deleted or may not be read: an export leaves those out without a trace,
        as a search does."""
        document = repository.get_unchecked(session, document_id)
        if document is None or document.deleted_at is not None:
            return None
        facts = repository.facts(document)
        if not self.access.check(actor, Permission.DOCUMENT_READ, document.patient_id, facts):
            return None
        return document

    def read_listed(
        self,
        session: Session,
        actor: Actor,
        row: DocumentVersion | SealedVersion,
        facts: DocumentFacts,
    ) -> dict[str, Any] | None:
        """A listed document's version (its ``facts`` read with it), decrypted if the actor
        may read the document, None otherwise: decided without recording, as the listing's
        one entry (its ``authorize``) records it."""
        if not self.access.check(actor, Permission.DOCUMENT_READ, facts.patient_id, facts):
            return None
        return self._decrypt_version(session, row)

    def _decrypt_version(
        self, session: Session, row: DocumentVersion | SealedVersion
    ) -> dict[str, Any]:
        """Plaintext with no decision: for the paths above that took one."""
        return self.envelope.open_json(
            session,
            row.patient_id,
            row.resource_ciphertext,
            row.resource_dek,
            row.kek_id,
            version_context(row.document_id, row.version, row.patient_id),
        )

    def history(self, session: Session, actor: Actor, document_id: str) -> list[dict[str, Any]]:
        document = self._guarded(
            session, actor, document_id, Permission.DOCUMENT_READ, detail={"interaction": "history"}
        )
        if document.deleted_at is not None:
            raise Gone("This document was deleted")
        return [
            self._decrypt_version(session, row)
            for row in reversed(repository.versions(session, document.patient_id, document.id))
        ]

    def content(self, session: Session, actor: Actor, binary_id: str) -> Content:
        binary = repository.stored_content(session, binary_id)
        if binary is None:
            raise self.access.refuse_unknown(
                session,
                actor,
                Permission.DOCUMENT_CONTENT,
                about_document=True,
                resource_type="Binary",
                resource_id=binary_id,
                not_found_as="Binary",
            )
        recorded = self.access.authorize_read(
            session,
            actor,
            Permission.DOCUMENT_CONTENT,
            binary.document.patient_id,
            document=binary.document,
            resource_type="Binary",
            resource_id=binary.id,
            detail={"document": binary.document_id},
            not_found_as="Binary",
        )
        # The key and the first chunk are read first; the entry is committed once the read
        # is ready, and nothing goes out before it is.
        context = binary_context(binary.id, binary.document_id, binary.patient_id)
        dek = self.envelope.content_key(
            session, binary.patient_id, binary.wrapped_dek, binary.kek_id, context
        )
        ciphertext = self.blobs.read(binary.blob_key, session)
        recorded.wait()
        return Content(
            binary.content_type,
            binary.size,
            self.envelope.open_content(dek, ciphertext, context, binary.segment_size),
        )

    # -- change -----------------------------------------------------------------------

    def update_metadata(
        self,
        session: Session,
        actor: Actor,
        document_id: str,
        operations: list[Operation],
        expected_version: int | None = None,
    ) -> tuple[Document, dict[str, Any]]:
        """Status and securityLabel changes; each makes a new version. ``expected_version``
        (from If-Match) guards against overwriting a change the caller has not seen."""
        document = repository.get_for_update(session, document_id)
        if document is None:
            # Refused as a document one may not see is, at the same cost.
            raise self.access.refuse_unknown(
                session,
                actor,
                Permission.DOCUMENT_UPDATE,
                about_document=True,
                resource_type="DocumentReference",
                resource_id=document_id,
                not_found_as="DocumentReference",
            )
        facts = repository.facts(document)
        # Who may make a change depends on what it changes (masking is the patient's, lifting
        # INVISIBLE_PATIENT the author's: docs/access.md), known only once the patch is
        # applied; until then only someone who can see the document learns anything more.
        self.access.require_visible(
            session,
            actor,
            Permission.DOCUMENT_UPDATE,
            facts,
            resource_type="DocumentReference",
            resource_id=document.id,
            not_found_as="DocumentReference",
        )
        if document.deleted_at is not None:
            raise Gone("This document was deleted")
        _check_version(document, expected_version)
        row, current = self._current(session, document)
        changes = changes_for(current, operations)
        if changes.get("status", current.get("status")) not in DOCUMENT_STATUSES:
            raise InvalidResource(
                "status must be current, superseded or entered-in-error",
                expression="DocumentReference.status",
            )
        self.access.authorize(
            session,
            actor,
            Permission.DOCUMENT_UPDATE,
            document.patient_id,
            document=facts,
            change=_metadata_change(current, changes),
            resource_type="DocumentReference",
            resource_id=document.id,
            detail={"change": ",".join(sorted({op.field for op in operations}))},
            not_found_as="DocumentReference",
        )
        if all(current.get(key) == value for key, value in changes.items()):
            # Nothing changes, so no version is made.
            return document, current
        before, after = current.get("status"), changes.get("status", current.get("status"))
        if before != after and (before, after) not in STATUS_CHANGES:
            raise Conflict(f"A {before} document cannot become {after}")
        resource = self._new_version(session, actor, document, changes, (row, current))
        return document, resource

    def _current(
        self, session: Session, document: Document
    ) -> tuple[DocumentVersion, dict[str, Any]]:
        row = repository.version(
            session, document.patient_id, document.id, document.current_version
        )
        if row is None:
            raise NotFound("DocumentReference not found")
        return row, self._decrypt_version(session, row)

    def _new_version(
        self,
        session: Session,
        actor: Actor,
        document: Document,
        changes: dict[str, Any],
        current: tuple[DocumentVersion, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        row, resource = current or self._current(session, document)
        resource = copy.deepcopy(resource)
        for key, value in changes.items():
            if value is None:
                resource.pop(key, None)
            else:
                resource[key] = value
        validate_resource(resource, expression="DocumentReference")
        number = document.current_version + 1
        now = utcnow()
        resource["meta"] = {
            **(resource.get("meta") or {}),
            "versionId": str(number),
            "lastUpdated": now.isoformat(),
        }
        rows_sql.insert_version(
            session,
            self._version_row(
                session,
                actor,
                document.id,
                number,
                document.patient_id,
                resource,
                row.binary_id,
                now,
            ),
        )
        document.current_version = number
        document.status = str(resource["status"])
        document.security_labels = repository.labels_text(security_label_codes(resource))
        document.updated_at = now
        session.flush()
        return resource

    def delete(
        self,
        session: Session,
        actor: Actor,
        document_id: str,
        expected_version: int | None = None,
    ) -> None:
        """Crypto-shredding: every data key of every version and of the content is destroyed;
        the tombstone, the version rows and the audit trail remain."""
        document = self._guarded(
            session, actor, document_id, Permission.DOCUMENT_DELETE, for_update=True
        )
        if document.deleted_at is not None:
            return
        _check_version(document, expected_version)
        repository.shred(session, document, utcnow())


def _new_facts(actor: Actor, new: NewDocument) -> DocumentFacts:
    author_kind, author_id = author_of(actor)
    return DocumentFacts(
        patient_id=new.patient_id,
        author_kind=author_kind,
        author_id=author_id,
        security_labels=new.metadata.security_labels,
        status=new.metadata.status,
        type_code=new.metadata.type_code,
        category_code=new.metadata.category_code,
    )


def _metadata_change(current: dict[str, Any], changes: dict[str, Any]) -> MetadataChange:
    after = {**current, **changes}
    return MetadataChange.between(
        current.get("status"),
        after.get("status"),
        security_label_codes(current),
        security_label_codes(after),
    )


def _check_version(document: Document, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != document.current_version:
        raise PreconditionFailed(
            f"If-Match names version {expected_version}; the current version is "
            f"{document.current_version}"
        )
