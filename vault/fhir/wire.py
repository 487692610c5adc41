"""Request bodies: media type, size, JSON, resourceType."""

from __future__ import annotations

import json
from typing import Any

from vault.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

JSON_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
FHIR_JSON = "application/fhir+json"
MAX_DEPTH = 64


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def require_json_media_type(content_type: str | None) -> None:
    kind = media_type(content_type)
    if kind in JSON_MEDIA_TYPES:
        return
    if kind.endswith("xml"):
        raise UnsupportedMediaType("FHIR XML is not supported; send application/fhir+json")
    raise UnsupportedMediaType(
        f"Unsupported media type {kind or '(none)'}; send application/fhir+json"
    )


def check_size(length: int, limit: int) -> None:
    if length > limit:
        raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("Request body is not valid UTF-8") from None
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, RecursionError):
        raise BadRequest("Request body is not valid JSON") from None
    _check_depth(document)
    return document


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def _check_depth(document: Any) -> None:
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest("Request body is nested too deeply")
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)


def parse_resource(body: bytes, expected: str | tuple[str, ...] | None = None) -> dict[str, Any]:
    document = parse_json(body)
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        raise BadRequest("Request body is not a FHIR resource (no resourceType)")
    if expected is not None:
        allowed = (expected,) if isinstance(expected, str) else expected
        if document["resourceType"] not in allowed:
            raise BadRequest(
                f"Expected {' or '.join(allowed)}, got {document['resourceType']}",
                expression="resourceType",
            )
    return document
