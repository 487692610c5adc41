"""The IHE MHD / ANS PDSm rules that matter for a store, and the fields the vault indexes."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vault.documents.classes import correspondence
from vault.errors import InvalidResource
from vault.fhir import base64binary
from vault.fhir.wire import media_type

DOCUMENT_STATUSES = frozenset({"current", "superseded", "entered-in-error"})
PDF_MAGIC = b"%PDF-"
SHA1_BYTES = 20
MAX_IDENTIFIER = 512
MAX_CODE = 256
MAX_LABELS = 512
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")


@dataclass
class DocumentMetadata:
    master_identifier: str
    status: str
    type_code: str | None
    category_code: str | None
    date: datetime | None
    security_labels: frozenset[str]
    content_type: str
    declared_size: int | None
    declared_hash: str | None
    inline_data: str | None
    attachment_url: str | None
    warnings: list[str] = field(default_factory=list)
    # The content's SHA-1, once check_content has computed it.
    content_sha1: bytes | None = None


def _token(concept: Any) -> str | None:
    """``system|code`` of a CodeableConcept's first coding, the form searches use."""
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
            return f"{coding.get('system', '')}|{coding['code']}"
    return None


def security_label_codes(resource: dict[str, Any]) -> frozenset[str]:
    codes = set()
    for label in resource.get("securityLabel") or []:
        for coding in (label or {}).get("coding") or []:
            if isinstance(coding, dict) and coding.get("code"):
                codes.add(str(coding["code"]))
    return frozenset(codes)


def _parse_date(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        # fhir.resources takes a JSON number for an instant (as a Unix time); FHIR does not.
        raise InvalidResource("date must be a FHIR instant", expression=f"{where}.date")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidResource("date must be a FHIR instant", expression=f"{where}.date") from None


def extract(resource: dict[str, Any], *, where: str = "DocumentReference") -> DocumentMetadata:
    """Check the metadata rules and pull out what the vault indexes. ``where`` is the
    resource's FHIRPath in the request, for error locations. A missing category is derived
    from the type and written into ``resource``, with a warning."""
    master = resource.get("masterIdentifier")
    if not isinstance(master, dict) or not master.get("value"):
        raise InvalidResource(
            "masterIdentifier (the document's unique id) is required",
            expression=f"{where}.masterIdentifier",
        )
    status = resource.get("status")
    if status not in DOCUMENT_STATUSES:
        raise InvalidResource(
            "status must be current, superseded or entered-in-error", expression=f"{where}.status"
        )
    type_code = _token(resource.get("type"))
    if type_code is None:
        raise InvalidResource("type with a coded value is required", expression=f"{where}.type")
    category_code, derived_warning = _category(resource, where)
    if not isinstance(resource.get("subject"), dict):
        raise InvalidResource("subject (the patient) is required", expression=f"{where}.subject")
    for index, author in enumerate(resource.get("author") or []):
        if not isinstance(author, dict) or not (
            author.get("reference") or author.get("identifier") or author.get("display")
        ):
            raise InvalidResource(
                "author must be a reference", expression=f"{where}.author[{index}]"
            )
    contents = resource.get("content") or []
    if len(contents) != 1:
        raise InvalidResource(
            "exactly one content.attachment is required", expression=f"{where}.content"
        )
    attachment = contents[0].get("attachment") or {}
    content_type = attachment.get("contentType")
    if not content_type:
        raise InvalidResource(
            "attachment.contentType is required",
            expression=f"{where}.content[0].attachment.contentType",
        )
    if not _MEDIA_TYPE.fullmatch(media_type(str(content_type))):
        raise InvalidResource(
            "attachment.contentType must be a media type (type/subtype)",
            expression=f"{where}.content[0].attachment.contentType",
        )
    data, url = attachment.get("data"), attachment.get("url")
    if data is None and not url:
        raise InvalidResource(
            "attachment needs data or a url to a Binary in the same submission",
            expression=f"{where}.content[0].attachment",
        )
    size = attachment.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise InvalidResource(
            "attachment.size must be a non-negative integer",
            expression=f"{where}.content[0].attachment.size",
        )
    labels = security_label_codes(resource)
    # The indexed fields live in bounded columns: refuse what would not fit, here, rather
    # than fail in the database.
    _bounded(_identifier_text(master), MAX_IDENTIFIER, f"{where}.masterIdentifier")
    _bounded(type_code, MAX_CODE, f"{where}.type")
    _bounded(category_code, MAX_CODE, f"{where}.category")
    _bounded(" ".join(sorted(labels)) + "  ", MAX_LABELS, f"{where}.securityLabel")
    return DocumentMetadata(
        master_identifier=_identifier_text(master),
        status=str(status),
        type_code=type_code,
        category_code=category_code,
        date=_parse_date(resource.get("date"), where),
        security_labels=labels,
        content_type=str(content_type),
        declared_size=size,
        declared_hash=attachment.get("hash"),
        inline_data=data,
        attachment_url=url,
        warnings=[derived_warning] if derived_warning else [],
    )


def _category(resource: dict[str, Any], where: str) -> tuple[str, str | None]:
    """The class token, and a warning when it had to be derived from the type."""
    categories = resource.get("category") or []
    if not categories:
        return _derive_category(resource, where)
    category_code = _token(categories[0])
    if category_code is None:
        raise InvalidResource(
            "category with a coded value is required", expression=f"{where}.category"
        )
    return category_code, None


def _derive_category(resource: dict[str, Any], where: str) -> tuple[str, str]:
    """The class the ANS correspondence gives the document's type, written into the
    resource (the stored DocumentReference carries the class it is indexed under), and the
    warning that tells the sender so."""
    table = correspondence()
    found = table.class_of(resource.get("type"))
    if found is None:
        raise InvalidResource(
            "category is absent and no class can be derived from this type with the ANS "
            "correspondence between document types and classes (ASS_X04); send a category",
            expression=f"{where}.category",
        )
    type_system, type_code, class_code = found
    resource["category"] = [{"coding": [{"system": table.class_system, "code": class_code}]}]
    warning = (
        f"category was absent; class {class_code} was derived from type "
        f"{type_system}|{type_code} with the ANS correspondence ASS_X04 "
        f"(version {table.version})"
    )
    return f"{table.class_system}|{class_code}", warning


def _bounded(text: str, limit: int, expression: str) -> None:
    if len(text) > limit:
        raise InvalidResource(f"Too long: at most {limit} characters", expression=expression)


def _identifier_text(identifier: dict[str, Any]) -> str:
    system = identifier.get("system") or ""
    value = str(identifier["value"])
    # urn:ietf:rfc:3986 means the value is itself a URI: the value alone identifies it.
    if system in ("", "urn:ietf:rfc:3986"):
        return value
    return f"{system}|{value}"


def check_content(metadata: DocumentMetadata, content: bytes, where: str) -> None:
    """``size`` and ``hash`` (SHA-1, base64, per MHD), when given, must match the bytes."""
    if metadata.declared_size is not None and metadata.declared_size != len(content):
        raise InvalidResource(
            "attachment.size does not match the document's bytes", expression=f"{where}.size"
        )
    if metadata.declared_hash is not None:
        declared = base64binary.decode(metadata.declared_hash, expression=f"{where}.hash")
        digest = hashlib.sha1(content, usedforsecurity=False).digest()
        metadata.content_sha1 = digest
        if declared == digest:
            pass
        elif declared.lower() == digest.hex().encode():
            # The published IHE MHD examples base64 the hex string of the digest instead of
            # the digest itself. It still proves the bytes arrived intact, so it is taken,
            # and the sender is told.
            metadata.warnings.append(
                "attachment.hash is base64 of the hex SHA-1 string rather than of the 20-byte "
                "digest; accepted, as it matches the content"
            )
        else:
            raise InvalidResource(
                "attachment.hash (SHA-1) does not match the document's bytes"
                if len(declared) in (SHA1_BYTES, 2 * SHA1_BYTES)
                else "attachment.hash must be the base64 SHA-1 digest of the document",
                expression=f"{where}.hash",
            )
    if media_type(metadata.content_type) == "application/pdf" and not content.startswith(PDF_MAGIC):
        metadata.warnings.append(
            "contentType is application/pdf but the bytes are not a PDF; stored as sent"
        )


def sha1_base64(content: bytes, known: bytes | None = None) -> str:
    """The content's SHA-1 in base64; ``known`` is its digest when already computed."""
    digest = known if known is not None else hashlib.sha1(content, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()
