"""Ingestion: ITI-105 Simplified Publish, patient uploads, and ITI-65 Provide Document
Bundle. Every rule that needs no database is checked before anything is written, and one
transaction holds the rest, so a submission lands whole or not at all."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from uuid import uuid4

from vault.access.policy import Actor
from vault.db import Session
from vault.documents.inline import Decoded, validate_bundle_once, validate_resource_once
from vault.documents.metadata import DocumentMetadata, check_content, extract
from vault.documents.patch import Operation, parse_fhirpath_patch
from vault.documents.repository.rows import NewRows
from vault.documents.service import DocumentService, NewDocument, StoredDocument, sender_of
from vault.documents.submission import Entry, Submission
from vault.errors import InvalidResource, NotFound, PreconditionFailed
from vault.fhir import base64binary
from vault.fhir.document_bundle import check_document, is_fhir_content
from vault.fhir.references import local
from vault.identity.principal import Role
from vault.patients.service import PatientService
from vault.submissions.service import SubmissionSetService
from vault.submissions.subject import SubjectResolver, UnknownSubject


@dataclass
class EntryResult:
    """What one entry of a submission did; the HTTP layer says it as a transaction-response
    entry (vault/api/fhir/bundles.py: status, location, ETag)."""

    resource_type: str
    id: str
    created: bool
    # The version the entry left, for its ETag; None for a record (a Patient has none).
    version: int | None = None
    # Whether its location names that version (a document's history) or the resource.
    versioned_location: bool = False
    last_modified: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Document:
    """A DocumentReference of the submission, checked and ready to store."""

    entry: Entry
    metadata: DocumentMetadata
    content: bytes
    binary: Entry | None
    replaces: str | None


class Ingestion:
    def __init__(
        self,
        documents: DocumentService,
        patients: PatientService,
        subjects: SubjectResolver,
        submission_sets: SubmissionSetService,
    ) -> None:
        self.documents = documents
        self.patients = patients
        self.subjects = subjects
        self.submission_sets = submission_sets

    # -- ITI-105 and patient uploads ------------------------------------------------------

    def _resolve(self, session: Session, actor: Actor, *args: Any, **kwargs: Any) -> str:
        """Professionals may feed any record, so telling them a subject is unknown reveals
        nothing; a patient or caregiver must not learn whether someone else's record exists:
        for them an unknown subject answers exactly like a refused one."""
        try:
            return self.subjects.resolve(session, actor, *args, **kwargs)
        except UnknownSubject:
            if actor.principal.acting_professional is None:
                raise NotFound("Resource not found") from None
            raise

    def publish(self, session: Session, actor: Actor, resource: dict[str, Any]) -> StoredDocument:
        where = "DocumentReference"
        resource = _prepare_upload(actor, resource)
        decoded = validate_resource_once(resource, expression=where)
        metadata = extract(resource, where=where)
        if metadata.inline_data is None:
            raise InvalidResource(
                "Simplified Publish carries the document in attachment.data",
                expression=f"{where}.content[0].attachment.data",
            )
        content = decoded.content(0, metadata.inline_data)
        if content is None:
            content = base64binary.decode(
                metadata.inline_data, expression=f"{where}.content[0].attachment.data"
            )
        _check_content(metadata, content, where)
        replaces = _replaces(resource, where, self.subjects.fhir_base, in_bundle=None)
        patient_id = self._resolve(
            session,
            actor,
            resource.get("subject"),
            contained=resource.get("contained") or [],
            expression=f"{where}.subject",
        )
        self._check_source_patient(session, resource, patient_id, where)
        return self.documents.create(
            session, actor, NewDocument(resource, metadata, content, patient_id, replaces)
        )

    # -- ITI-65 ---------------------------------------------------------------------------

    def provide_bundle(
        self, session: Session, actor: Actor, bundle: dict[str, Any]
    ) -> list[EntryResult]:
        submission = Submission.parse(bundle)
        decoded = validate_bundle_once(bundle, expression="Bundle")
        listed = submission.check_submission_set()
        documents = [
            _prepare(submission, _upload_entry(actor, entry), self.subjects.fhir_base, decoded)
            for entry in submission.documents
        ]
        _check_unique_documents(documents)
        _check_binaries_used(submission, documents)
        patches = [_parse_patch(entry) for entry in submission.patches]

        results: dict[int, EntryResult] = {}
        bundle_patients = self._bundle_patients(session, actor, submission, results)
        patient_id = self._single_patient(session, actor, submission, bundle_patients)

        stored_ids: dict[int, str] = {}
        retried = True
        superseded: set[str] = set()
        # The documents' rows are inserted together, table by table, once all are sealed.
        rows = NewRows.for_documents(
            session,
            sender_of(actor, patient_id),
            [document.metadata.master_identifier for document in documents],
        )
        for document in documents:
            stored = self.documents.create(
                session,
                actor,
                NewDocument(
                    document.entry.resource,
                    document.metadata,
                    document.content,
                    patient_id,
                    document.replaces,
                ),
                rows,
            )
            retried = retried and not stored.created
            stored_ids[document.entry.index] = stored.id
            if document.replaces is not None:
                superseded.add(document.replaces)
            results[document.entry.index] = _document_result(stored)
            if document.binary is not None:
                results[document.binary.index] = EntryResult(
                    "Binary", stored.binary_id, stored.created
                )
        rows.insert(session)
        for patch in patches:
            results[patch.entry.index] = self._patch(session, actor, patch, patient_id, superseded)

        kept = self.submission_sets.record(
            session,
            actor,
            submission.submission_set.resource,
            patient_id,
            [stored_ids[index] for index in listed],
            retried=retried,
        )
        results[submission.submission_set.index] = EntryResult(
            "List", kept.id, kept.created, version=1, last_modified=kept.last_updated
        )
        return [results[entry.index] for entry in submission.entries]

    def _bundle_patients(
        self,
        session: Session,
        actor: Actor,
        submission: Submission,
        results: dict[int, EntryResult],
    ) -> dict[int, str]:
        """The transaction's Patient entry: conditional create on its INS, as ``POST
        /fhir/Patient`` does; ``ifNoneExist``, when given, must name that INS."""
        found: dict[int, str] = {}
        for entry in submission.patients:
            ins = self.patients.ins_of(entry.resource, expression=entry.resource_where)
            if entry.if_none_exist is not None:
                _check_if_none_exist(entry, ins.system, ins.value)
            patient, created = self.patients.ensure(
                session, actor, entry.resource, expression=entry.resource_where
            )
            found[entry.index] = patient.id
            results[entry.index] = EntryResult("Patient", patient.id, created)
        return found

    def _single_patient(
        self,
        session: Session,
        actor: Actor,
        submission: Submission,
        bundle_patients: dict[int, str],
    ) -> str:
        """MHD: one submission, one patient. The SubmissionSet, every DocumentReference and
        the Patient entry, if any, must all be the same person."""
        patient_id = ""
        for entry in [submission.submission_set, *submission.documents]:
            resource = entry.resource
            where = f"{entry.resource_where}.subject"

            def in_bundle(reference: str, source: Entry = entry, where: str = where) -> str | None:
                target = submission.resolve(reference, source)
                if target is None:
                    return None
                if target.index not in bundle_patients:
                    raise InvalidResource("subject must reference a Patient", expression=where)
                return bundle_patients[target.index]

            found = self._resolve(
                session,
                actor,
                resource.get("subject"),
                contained=resource.get("contained") or [],
                expression=where,
                in_bundle=in_bundle,
            )
            if patient_id and found != patient_id:
                raise InvalidResource(
                    "All resources of one submission must concern the same patient",
                    expression=where,
                )
            patient_id = found
            if resource.get("resourceType") == "DocumentReference":
                self._check_source_patient(session, resource, found, entry.resource_where)
        for index, bundled in bundle_patients.items():
            if bundled != patient_id:
                raise InvalidResource(
                    "The Patient entry is not the patient of the submission",
                    expression=f"Bundle.entry[{index}]",
                )
        return patient_id

    def _check_source_patient(
        self, session: Session, resource: dict[str, Any], patient_id: str, where: str
    ) -> None:
        """``context.sourcePatientInfo`` describes the subject as the source knows them; an
        INS there that names someone else means two people were mixed up."""
        reference = ((resource.get("context") or {}).get("sourcePatientInfo") or {}).get(
            "reference"
        )
        if not isinstance(reference, str) or not reference.startswith("#"):
            return
        for contained in resource.get("contained") or []:
            if (
                isinstance(contained, dict)
                and contained.get("resourceType") == "Patient"
                and contained.get("id") == reference[1:]
            ):
                self.subjects.same_person(
                    session, patient_id, contained, f"{where}.context.sourcePatientInfo"
                )

    def _patch(
        self,
        session: Session,
        actor: Actor,
        patch: _Patch,
        patient_id: str,
        superseded: set[str],
    ) -> EntryResult:
        if _only_supersedes(patch.operations) and patch.document_id in superseded:
            # The replacing DocumentReference of this submission already superseded it.
            return EntryResult("DocumentReference", patch.document_id, created=False)
        document, resource = self.documents.update_metadata(
            session, actor, patch.document_id, patch.operations
        )
        if document.patient_id != patient_id:
            # Only a document its author may change gets here, so this reveals nothing new.
            raise InvalidResource(
                "The PATCH changes a document of another patient than the submission's",
                expression=f"{patch.entry.where}.request.url",
            )
        return EntryResult(
            "DocumentReference",
            document.id,
            created=False,
            version=document.current_version,
            versioned_location=True,
            last_modified=resource["meta"]["lastUpdated"],
        )


def _upload_entry(actor: Actor, entry: Entry) -> Entry:
    return dataclasses.replace(entry, resource=_prepare_upload(actor, entry.resource))


@dataclass(frozen=True)
class _Patch:
    entry: Entry
    document_id: str
    operations: list[Operation]


def _parse_patch(entry: Entry) -> _Patch:
    document_id = entry.url.split("?", 1)[0].removeprefix("DocumentReference/")
    if not document_id or "/" in document_id:
        raise InvalidResource(
            "PATCH in a Provide Document Bundle applies to DocumentReference/{id}",
            expression=f"{entry.where}.request.url",
        )
    return _Patch(entry, document_id, parse_fhirpath_patch(entry.resource))


def _prepare_upload(actor: Actor, resource: dict[str, Any]) -> dict[str, Any]:
    """A patient's own upload: the author is the patient, and a patient's app need not mint
    a unique id for the document."""
    if actor.principal.role is not Role.PATIENT:
        return resource
    resource = copy.deepcopy(resource)
    if actor.own_patient_id is not None:
        resource["author"] = [{"reference": f"Patient/{actor.own_patient_id}"}]
    if not resource.get("masterIdentifier"):
        resource["masterIdentifier"] = {
            "system": "urn:ietf:rfc:3986",
            "value": f"urn:uuid:{uuid4()}",
        }
    return resource


def _prepare(
    submission: Submission, entry: Entry, fhir_base: str, decoded: Decoded | None = None
) -> _Document:
    """``decoded``: the submission's inline documents, as validating it decoded them."""
    decoded = decoded or Decoded()
    where = entry.resource_where
    metadata = extract(entry.resource, where=where)
    binary: Entry | None = None
    content: bytes | None
    if metadata.inline_data is not None:
        content = decoded.content(entry.index, metadata.inline_data)
        if content is None:
            content = base64binary.decode(
                metadata.inline_data, expression=f"{where}.content[0].attachment.data"
            )
    else:
        binary = submission.binary_for(entry, metadata.attachment_url or "")
        if binary is None:
            raise InvalidResource(
                "attachment.url must point to a Binary of this transaction",
                expression=f"{where}.content[0].attachment.url",
            )
        if binary.resource.get("data") is None:
            raise InvalidResource(
                "The Binary carries no data", expression=f"{binary.resource_where}.data"
            )
        content = decoded.content(binary.index, binary.resource["data"])
        if content is None:
            content = base64binary.decode(
                binary.resource["data"], expression=f"{binary.resource_where}.data"
            )
        declared = binary.resource.get("contentType")
        if declared and declared != metadata.content_type:
            metadata.warnings.append(
                "Binary.contentType differs from attachment.contentType; the attachment's is kept"
            )
    _check_content(metadata, content, where)
    replaces = _replaces(entry.resource, where, fhir_base, in_bundle=(submission, entry))
    return _Document(entry, metadata, content, binary, replaces)


def _check_content(metadata: DocumentMetadata, content: bytes, where: str) -> None:
    attachment = f"{where}.content[0].attachment"
    check_content(metadata, content, attachment)
    if is_fhir_content(metadata.content_type):
        # A FHIR document sent as content (a lab report Bundle, say) is validated as one.
        check_document(content, expression=f"{attachment}.data")


def _replaces(
    resource: dict[str, Any],
    where: str,
    fhir_base: str,
    *,
    in_bundle: tuple[Submission, Entry] | None,
) -> str | None:
    """The stored document a ``replaces`` relation supersedes, by its id."""
    expression = f"{where}.relatesTo"
    targets = [
        (relation.get("target") or {}).get("reference")
        for relation in resource.get("relatesTo") or []
        if isinstance(relation, dict) and relation.get("code") == "replaces"
    ]
    if not targets:
        return None
    if len(targets) > 1 or not isinstance(targets[0], str):
        raise InvalidResource("A document replaces at most one document", expression=expression)
    target = targets[0]
    if in_bundle is not None and in_bundle[0].resolve(target, in_bundle[1]) is not None:
        # XDS replaces only what the registry already holds: a document submitted and
        # superseded in one go would never have been current.
        raise InvalidResource(
            "relatesTo.replaces must name a document already stored, not one of this submission",
            expression=expression,
        )
    parts = local(target, fhir_base)
    if parts is None or parts[0] != "DocumentReference":
        raise InvalidResource(
            "relatesTo.target must reference a DocumentReference on this server",
            expression=expression,
        )
    return parts[1]


def _check_unique_documents(documents: list[_Document]) -> None:
    """masterIdentifier is the document's unique id: two documents of one submission cannot
    share it (XDS: XDSRegistryDuplicateUniqueIdInMessage)."""
    seen: set[str] = set()
    for document in documents:
        if document.metadata.master_identifier in seen:
            raise InvalidResource(
                "Two DocumentReferences of this submission share one masterIdentifier",
                expression=f"{document.entry.resource_where}.masterIdentifier",
            )
        seen.add(document.metadata.master_identifier)


def _check_binaries_used(submission: Submission, documents: list[_Document]) -> None:
    used: dict[int, Entry] = {}
    for document in documents:
        if document.binary is None:
            continue
        if document.binary.index in used:
            raise InvalidResource(
                "Each Binary is the content of one DocumentReference",
                expression=f"{document.entry.resource_where}.content[0].attachment.url",
            )
        used[document.binary.index] = document.entry
    for entry in submission.binaries:
        if entry.index not in used:
            raise InvalidResource(
                "A Binary in the transaction is not the content of any DocumentReference",
                expression=entry.where,
            )


def _check_if_none_exist(entry: Entry, system: str, value: str) -> None:
    condition = (entry.if_none_exist or "").removeprefix("Patient?")
    criteria = parse_qs(condition, keep_blank_values=True)
    values = criteria.get("identifier") or []
    if set(criteria) != {"identifier"} or len(values) != 1 or "|" not in values[0]:
        raise InvalidResource(
            "ifNoneExist supports identifier=system|value only",
            expression=f"{entry.where}.request.ifNoneExist",
        )
    if tuple(values[0].split("|", 1)) != (system, value):
        raise PreconditionFailed(
            "ifNoneExist does not name the Patient's INS",
        )


def _only_supersedes(operations: list[Any]) -> bool:
    return all(op.field == "status" and op.value == "superseded" for op in operations)


def _document_result(stored: StoredDocument) -> EntryResult:
    return EntryResult(
        "DocumentReference",
        stored.id,
        stored.created,
        version=stored.version,
        versioned_location=True,
        last_modified=stored.last_updated.isoformat(),
        warnings=stored.warnings,
    )
