"""Ingestion: ITI-105 Simplified Publish, patient uploads, and ITI-65 Provide Document
Bundle. Everything is checked before anything is written, and one transaction holds it
all, so a submission lands whole or not at all."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from sqlalchemy.orm import Session

from vault.access.policy import Actor
from vault.access.principal import Role
from vault.documents.metadata import DocumentMetadata, check_content, extract
from vault.documents.patch import parse_fhirpath_patch
from vault.documents.service import DocumentService, NewDocument, StoredDocument
from vault.documents.subject import SubjectResolver
from vault.errors import BadRequest, InvalidResource
from vault.fhir import base64binary
from vault.fhir.validate import validate_resource
from vault.fhir.wire import JSON_MEDIA_TYPES
from vault.patients.service import PatientService

SUBMISSION_SET = "submissionset"
FOLDER = "folder"


@dataclass
class EntryResult:
    status: str
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    warnings: list[str] = field(default_factory=list)


class Ingestion:
    def __init__(
        self, documents: DocumentService, patients: PatientService, subjects: SubjectResolver
    ) -> None:
        self.documents = documents
        self.patients = patients
        self.subjects = subjects

    # -- ITI-105 and patient uploads ------------------------------------------------------

    def publish(self, session: Session, actor: Actor, resource: dict[str, Any]) -> StoredDocument:
        resource = self._prepare_upload(actor, resource)
        validate_resource(resource, expression="DocumentReference")
        metadata = extract(resource)
        patient_id = self.subjects.resolve(
            session,
            actor,
            resource.get("subject"),
            contained=resource.get("contained") or [],
            in_bundle={},
            expression="DocumentReference.subject",
        )
        if metadata.inline_data is None:
            raise InvalidResource(
                "Simplified Publish carries the document in attachment.data",
                expression="DocumentReference.content[0].attachment.data",
            )
        content = base64binary.decode(
            metadata.inline_data, expression="DocumentReference.content[0].attachment.data"
        )
        check_content(metadata, content, "DocumentReference.content[0].attachment")
        _check_nested_bundle(metadata, content)
        replaces = self._replaces(resource, {})
        return self.documents.create(
            session, actor, NewDocument(resource, metadata, content, patient_id, replaces)
        )

    @staticmethod
    def _prepare_upload(actor: Actor, resource: dict[str, Any]) -> dict[str, Any]:
        """A patient's own upload: the author is the patient, and a patient's app need not
        mint a unique id for the document."""
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

    @staticmethod
    def _replaces(resource: dict[str, Any], created: dict[str, str]) -> str | None:
        targets = [
            relation.get("target", {}).get("reference")
            for relation in resource.get("relatesTo") or []
            if isinstance(relation, dict) and relation.get("code") == "replaces"
        ]
        if not targets:
            return None
        if len(targets) > 1 or not isinstance(targets[0], str):
            raise InvalidResource(
                "A document replaces at most one document", expression="DocumentReference.relatesTo"
            )
        target = targets[0]
        if target in created:
            return created[target]
        kind, _, document_id = target.rpartition("/")
        if not kind.endswith("DocumentReference") or not document_id:
            raise InvalidResource(
                "relatesTo.target must reference a DocumentReference",
                expression="DocumentReference.relatesTo",
            )
        return document_id

    # -- ITI-65 ---------------------------------------------------------------------------

    def provide_bundle(
        self, session: Session, actor: Actor, bundle: dict[str, Any]
    ) -> list[EntryResult]:
        if bundle.get("type") != "transaction":
            raise InvalidResource(
                "POST /fhir takes a Bundle of type transaction", expression="Bundle.type"
            )
        validate_resource(bundle, expression="Bundle")
        entries = bundle.get("entry") or []
        if not entries:
            raise InvalidResource("The transaction is empty", expression="Bundle.entry")
        plan = _Plan.of(entries)

        in_bundle: dict[str, str] = {}
        results: dict[int, EntryResult] = {}
        for index in plan.patients:
            entry = entries[index]
            patient, created = self.patients.ensure(
                session, actor, entry["resource"], expression=f"Bundle.entry[{index}].resource"
            )
            in_bundle[entry.get("fullUrl") or f"#entry{index}"] = patient.id
            results[index] = EntryResult(
                "201 Created" if created else "200 OK", f"Patient/{patient.id}"
            )

        patient_id = self._single_patient(session, actor, entries, plan, in_bundle)
        created_ids: dict[str, str] = {}
        superseded: set[str] = set()
        for index in plan.documents:
            entry = entries[index]
            where = f"Bundle.entry[{index}].resource"
            resource = entry["resource"]
            metadata = extract(resource)
            content, binary_url = self._content(metadata, plan, where)
            check_content(metadata, content, f"{where}.content[0].attachment")
            _check_nested_bundle(metadata, content)
            replaces = self._replaces(resource, created_ids)
            if replaces is not None:
                superseded.add(replaces)
            stored = self.documents.create(
                session, actor, NewDocument(resource, metadata, content, patient_id, replaces)
            )
            if entry.get("fullUrl"):
                created_ids[entry["fullUrl"]] = stored.id
            results[index] = _document_result(stored)
            if binary_url is not None:
                binary_entry = plan.binary_index[binary_url]
                results[binary_entry] = EntryResult(
                    results[index].status, f"Binary/{stored.binary_id}"
                )

        for index in plan.binaries:
            if index not in results:
                raise InvalidResource(
                    "A Binary in the transaction is not used by any DocumentReference",
                    expression=f"Bundle.entry[{index}]",
                )
        for index in plan.patches:
            results[index] = self._patch(session, actor, entries[index], superseded, index)
        for index in plan.submission_sets:
            results[index] = EntryResult("201 Created", f"List/{uuid4()}")
        return [results[index] for index in range(len(entries))]

    def _single_patient(
        self,
        session: Session,
        actor: Actor,
        entries: list[Any],
        plan: _Plan,
        in_bundle: dict[str, str],
    ) -> str:
        """MHD: one submission, one patient. The SubmissionSet and every DocumentReference
        must name the same patient."""
        found: set[str] = set()
        for index in [*plan.submission_sets, *plan.documents]:
            resource = entries[index]["resource"]
            found.add(
                self.subjects.resolve(
                    session,
                    actor,
                    resource.get("subject"),
                    contained=resource.get("contained") or [],
                    in_bundle=in_bundle,
                    expression=f"Bundle.entry[{index}].resource.subject",
                )
            )
        if len(found) != 1:
            raise InvalidResource(
                "All resources of one submission must concern the same patient",
                expression="Bundle.entry",
            )
        return found.pop()

    @staticmethod
    def _content(metadata: DocumentMetadata, plan: _Plan, where: str) -> tuple[bytes, str | None]:
        if metadata.inline_data is not None:
            return base64binary.decode(
                metadata.inline_data, expression=f"{where}.content[0].attachment.data"
            ), None
        url = metadata.attachment_url or ""
        binary = plan.binary(url)
        if binary is None:
            raise InvalidResource(
                "attachment.url must point to a Binary in this transaction",
                expression=f"{where}.content[0].attachment.url",
            )
        full_url, resource = binary
        if resource.get("data") is None:
            raise InvalidResource(
                "The Binary carries no data", expression=f"{where}.content[0].attachment.url"
            )
        if resource.get("contentType") and resource["contentType"] != metadata.content_type:
            metadata.warnings.append(
                "Binary.contentType differs from attachment.contentType; the attachment's is kept"
            )
        return base64binary.decode(resource["data"], expression="Binary.data"), full_url

    def _patch(
        self,
        session: Session,
        actor: Actor,
        entry: dict[str, Any],
        superseded: set[str],
        index: int,
    ) -> EntryResult:
        where = f"Bundle.entry[{index}]"
        operations = parse_fhirpath_patch(entry["resource"])
        url = str(entry["request"]["url"])
        kind, _, document_id = url.partition("/")
        if kind != "DocumentReference" or not document_id:
            raise InvalidResource(
                "PATCH in a Provide Document Bundle applies to a DocumentReference",
                expression=where,
            )
        if _only_supersedes(operations) and document_id in superseded:
            # The replacing DocumentReference in this bundle already superseded it.
            return EntryResult("200 OK", f"DocumentReference/{document_id}")
        document, resource = self.documents.update_metadata(session, actor, document_id, operations)
        return EntryResult(
            "200 OK",
            f"DocumentReference/{document.id}/_history/{document.current_version}",
            f'W/"{document.current_version}"',
            resource["meta"]["lastUpdated"],
        )


def _only_supersedes(operations: list[Any]) -> bool:
    return all(op.field == "status" and op.value == "superseded" for op in operations)


def _document_result(stored: StoredDocument) -> EntryResult:
    return EntryResult(
        "201 Created" if stored.created else "200 OK",
        f"DocumentReference/{stored.id}/_history/{stored.version}",
        f'W/"{stored.version}"',
        stored.last_updated.isoformat(),
        stored.warnings,
    )


def _check_nested_bundle(metadata: DocumentMetadata, content: bytes) -> None:
    """A FHIR document (Bundle of type document) sent as content is validated as FHIR too."""
    if metadata.content_type.split(";")[0].strip() not in JSON_MEDIA_TYPES:
        return
    from vault.fhir.wire import parse_resource  # noqa: PLC0415

    try:
        nested = parse_resource(content, expected="Bundle")
    except BadRequest as error:
        raise InvalidResource(
            f"FHIR content: {error.message}", expression="attachment.data"
        ) from None
    if nested.get("type") != "document":
        raise InvalidResource(
            "FHIR content must be a Bundle of type document", expression="attachment.data"
        )
    validate_resource(nested, expression="attachment.data(Bundle)")
    first = (nested.get("entry") or [{}])[0].get("resource") or {}
    if first.get("resourceType") != "Composition":
        raise InvalidResource(
            "A document Bundle starts with a Composition",
            expression="attachment.data(Bundle).entry[0]",
        )


@dataclass
class _Plan:
    patients: list[int]
    documents: list[int]
    binaries: list[int]
    submission_sets: list[int]
    patches: list[int]
    binary_index: dict[str, int]
    _binary_resources: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, entries: list[Any]) -> _Plan:
        plan = cls([], [], [], [], [], {}, {})
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            where = f"Bundle.entry[{index}]"
            request = entry.get("request") or {}
            method, url = request.get("method"), str(request.get("url") or "")
            resource = entry.get("resource") or {}
            full_url = entry.get("fullUrl")
            if full_url:
                if full_url in seen:
                    raise BadRequest(
                        "Duplicate fullUrl in the Bundle", expression=f"{where}.fullUrl"
                    )
                seen.add(full_url)
            role = _classify(method, resource.get("resourceType"), url, resource, where)
            getattr(plan, role).append(index)
            if role == "binaries":
                if not full_url:
                    raise InvalidResource(
                        "A Binary needs a fullUrl for documents to point at", expression=where
                    )
                plan.binary_index[full_url] = index
                plan._binary_resources[full_url] = resource
        if len(plan.submission_sets) != 1:
            raise InvalidResource(
                "A Provide Document Bundle has exactly one SubmissionSet List",
                expression="Bundle.entry",
            )
        if not plan.documents:
            raise InvalidResource(
                "The submission contains no DocumentReference", expression="Bundle.entry"
            )
        return plan

    def binary(self, url: str) -> tuple[str, dict[str, Any]] | None:
        if url in self._binary_resources:
            return url, self._binary_resources[url]
        # "Binary/x" may name an entry whose fullUrl is absolute and ends the same way.
        if url.startswith("Binary/"):
            for full_url, resource in self._binary_resources.items():
                if full_url.endswith("/" + url) or resource.get("id") == url.removeprefix(
                    "Binary/"
                ):
                    return full_url, resource
        return None


def _classify(method: Any, kind: Any, url: str, resource: dict[str, Any], where: str) -> str:
    """Which part of an MHD submission an entry is; anything else is refused."""
    if kind == "List" and _list_code(resource) == FOLDER:
        raise InvalidResource("Folders are not supported by this vault", expression=where)
    if method == "PATCH" and kind == "Parameters":
        return "patches"
    roles = {
        ("Patient", "Patient"): "patients",
        ("DocumentReference", "DocumentReference"): "documents",
        ("Binary", "Binary"): "binaries",
        ("List", "List"): "submission_sets",
    }
    role = roles.get((kind, url.split("?", maxsplit=1)[0])) if method == "POST" else None
    if role is None:
        raise InvalidResource(
            f"{method} {kind or url} is not part of an MHD Provide Document Bundle",
            expression=where,
        )
    if role == "submission_sets" and _list_code(resource) != SUBMISSION_SET:
        raise InvalidResource("A List in a submission must be its SubmissionSet", expression=where)
    return role


def _list_code(resource: dict[str, Any]) -> str | None:
    for coding in (resource.get("code") or {}).get("coding") or []:
        if isinstance(coding, dict):
            return str(coding.get("code"))
    return None
