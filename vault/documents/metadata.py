"""The IHE MHD / ANS PDSm rules that matter for a store, and the fields the vault indexes."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vault.errors import InvalidResource
from vault.fhir import base64binary

DOCUMENT_STATUSES = frozenset({"current", "superseded", "entered-in-error"})
PDF_MAGIC = b"%PDF-"


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


def _parse_date(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidResource(
            "date must be a FHIR instant", expression="DocumentReference.date"
        ) from None


def extract(resource: dict[str, Any]) -> DocumentMetadata:
    """Check the metadata rules and pull out what the vault indexes."""
    where = "DocumentReference"
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
    categories = resource.get("category") or []
    category_code = _token(categories[0]) if categories else None
    if category_code is None:
        raise InvalidResource(
            "category with a coded value is required", expression=f"{where}.category"
        )
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
    data, url = attachment.get("data"), attachment.get("url")
    if data is None and not url:
        raise InvalidResource(
            "attachment needs data or a url to a Binary in the same submission",
            expression=f"{where}.content[0].attachment",
        )
    size = attachment.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise InvalidResource(
            "attachment.size must be a non-negative integer",
            expression=f"{where}.content[0].attachment.size",
        )
    return DocumentMetadata(
        master_identifier=_identifier_text(master),
        status=str(status),
        type_code=type_code,
        category_code=category_code,
        date=_parse_date(resource.get("date")),
        security_labels=security_label_codes(resource),
        content_type=str(content_type),
        declared_size=size,
        declared_hash=attachment.get("hash"),
        inline_data=data,
        attachment_url=url,
    )


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
        if declared == digest:
            pass
        elif declared == digest.hex().encode():
            # Published IHE examples base64 the hex string instead of the raw digest.
            metadata.warnings.append(
                "attachment.hash is base64 of the hex SHA-1 rather than of the digest; accepted"
            )
        else:
            raise InvalidResource(
                "attachment.hash does not match the document's bytes", expression=f"{where}.hash"
            )
    if metadata.content_type == "application/pdf" and not content.startswith(PDF_MAGIC):
        metadata.warnings.append(
            "contentType is application/pdf but the bytes are not a PDF; stored as sent"
        )


def sha1_base64(content: bytes) -> str:
    return base64.b64encode(hashlib.sha1(content, usedforsecurity=False).digest()).decode()
