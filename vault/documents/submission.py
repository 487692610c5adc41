"""An ITI-65 Provide Document Bundle taken apart: what each entry is and how the entries
point at each other. Pure: nothing here touches the database, so every structural rule is
checked before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vault.errors import InvalidResource
from vault.fhir.references import BundleIndex

SUBMISSION_SET = "submissionset"
FOLDER = "folder"
ACCEPTED = (
    "this server takes IHE MHD Provide Document Bundle transactions only: POST of one "
    "SubmissionSet List, of DocumentReferences with their Binaries and of at most one "
    "Patient, and PATCH of a DocumentReference"
)
# The parts of an MHD submission, by (method, resourceType).
_ROLES = {
    ("POST", "Patient"): "patients",
    ("POST", "DocumentReference"): "documents",
    ("POST", "Binary"): "binaries",
    ("POST", "List"): "submission_sets",
    ("PATCH", "Parameters"): "patches",
}
# Where senders put resources MHD wants contained, say so rather than only refuse.
_CONTAIN_HINT = frozenset({"Practitioner", "PractitionerRole", "Organization", "Device"})


@dataclass(frozen=True)
class Entry:
    index: int
    full_url: str | None
    resource: dict[str, Any]
    method: str
    url: str
    if_none_exist: str | None = None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def resource_where(self) -> str:
        return f"Bundle.entry[{self.index}].resource"


@dataclass
class Submission:
    entries: list[Entry]
    index: BundleIndex
    patients: list[Entry] = field(default_factory=list)
    documents: list[Entry] = field(default_factory=list)
    binaries: list[Entry] = field(default_factory=list)
    submission_sets: list[Entry] = field(default_factory=list)
    patches: list[Entry] = field(default_factory=list)

    @classmethod
    def parse(cls, bundle: dict[str, Any]) -> Submission:
        if bundle.get("type") != "transaction":
            raise InvalidResource(
                "POST /fhir takes a Bundle of type transaction", expression="Bundle.type"
            )
        raw = bundle.get("entry")
        if not isinstance(raw, list) or not raw:
            raise InvalidResource("The transaction is empty", expression="Bundle.entry")
        entries = [_entry(index, item) for index, item in enumerate(raw)]
        full_urls: dict[str, int] = {}
        for entry in entries:
            if entry.full_url is None:
                continue
            if entry.full_url in full_urls:
                raise InvalidResource(
                    "fullUrl must be unique in a Bundle (bdl-7)",
                    expression=f"{entry.where}.fullUrl",
                )
            full_urls[entry.full_url] = entry.index
        submission = cls(entries, BundleIndex(full_urls))
        for entry in entries:
            getattr(submission, _role(entry)).append(entry)
        submission._check_shape()
        return submission

    @property
    def submission_set(self) -> Entry:
        return self.submission_sets[0]

    def resolve(self, reference: str, source: Entry) -> Entry | None:
        found = self.index.resolve(reference, from_full_url=source.full_url)
        return None if found is None else self.entries[found]

    def _check_shape(self) -> None:
        if len(self.submission_sets) != 1:
            raise InvalidResource(
                "A Provide Document Bundle has exactly one SubmissionSet List",
                expression="Bundle.entry",
            )
        if not self.documents:
            raise InvalidResource(
                "The submission contains no DocumentReference", expression="Bundle.entry"
            )
        if len(self.patients) > 1:
            # One submission, one patient: a second Patient could only be someone else.
            raise InvalidResource(
                "A submission concerns one patient; it carries at most one Patient",
                expression=self.patients[1].where,
            )
        for entry in self.binaries:
            if not entry.full_url:
                raise InvalidResource(
                    "A Binary needs a fullUrl for its DocumentReference to point at",
                    expression=f"{entry.where}.fullUrl",
                )

    def check_submission_set(self) -> list[int]:
        """MHD: the SubmissionSet lists every DocumentReference of the submission, and
        nothing else of it (this server keeps no Folders). Returns the listed entries'
        indices, in ``List.entry`` order."""
        source = self.submission_set
        listed: list[int] = []
        for position, item in enumerate(source.resource.get("entry") or []):
            where = f"{source.resource_where}.entry[{position}].item"
            reference = ((item or {}).get("item") or {}).get("reference")
            target = self.resolve(reference, source) if isinstance(reference, str) else None
            if target is None or target.resource.get("resourceType") != "DocumentReference":
                raise InvalidResource(
                    "SubmissionSet entries must reference the DocumentReferences of this "
                    "submission",
                    expression=where,
                )
            listed.append(target.index)
        for document in self.documents:
            if document.index not in listed:
                raise InvalidResource(
                    "The SubmissionSet must reference every DocumentReference of the submission",
                    expression=document.where,
                )
        return listed

    def binary_for(self, document: Entry, url: str) -> Entry | None:
        target = self.resolve(url, document)
        if target is None or target.resource.get("resourceType") != "Binary":
            return None
        return target


def _entry(index: int, item: Any) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(item, dict):
        raise InvalidResource("A Bundle entry must be an object", expression=where)
    request = item.get("request")
    if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
        raise InvalidResource(
            "Every entry of a transaction has request.method and request.url",
            expression=f"{where}.request",
        )
    resource = item.get("resource")
    full_url = item.get("fullUrl")
    return Entry(
        index=index,
        full_url=full_url if isinstance(full_url, str) and full_url else None,
        resource=resource if isinstance(resource, dict) else {},
        method=str(request["method"]).upper(),
        url=str(request["url"]),
        if_none_exist=str(request["ifNoneExist"]) if request.get("ifNoneExist") else None,
    )


def _role(entry: Entry) -> str:
    # Not validated yet: the roles are decided first, so any JSON value can be here.
    declared = entry.resource.get("resourceType")
    kind = declared if isinstance(declared, str) else None
    if kind == "List" and list_code(entry.resource) == FOLDER:
        raise InvalidResource(
            "Folders are not supported: this vault keeps documents, not XDS folders",
            expression=entry.where,
        )
    role = _ROLES.get((entry.method, str(kind)))
    target = entry.url.split("?", 1)[0]
    if role == "patches":
        if not target.startswith("DocumentReference/"):
            role = None
    elif role is not None and target != kind:
        role = None
    if role is None:
        hint = (
            f"; put the {kind} in DocumentReference.contained instead"
            if kind in _CONTAIN_HINT and entry.method == "POST"
            else ""
        )
        raise InvalidResource(
            f"{entry.method} {kind or target}: {ACCEPTED}{hint}", expression=entry.where
        )
    if role == "submission_sets" and list_code(entry.resource) != SUBMISSION_SET:
        raise InvalidResource(
            "A List in a submission must be its SubmissionSet (code submissionset)",
            expression=f"{entry.resource_where}.code",
        )
    return role


def list_code(resource: dict[str, Any]) -> str | None:
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    return None
