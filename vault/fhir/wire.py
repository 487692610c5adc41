"""Request bodies: media type, size, JSON, resourceType."""

from __future__ import annotations

import json
import math
from typing import Any

from vault.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

# application/json so that generic clients work; application/json+fhir is the DSTU2 name
# some of them still send.
JSON_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
# The media types whose content is FHIR itself (a document sent as content).
FHIR_JSON_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json+fhir"})
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
        # RFC 8259 lets a parser ignore a byte order mark, and Windows clients send one.
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("Request body is not valid UTF-8") from None
    try:
        document = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_object,
        )
    except (ValueError, RecursionError):
        # ValueError besides JSONDecodeError: an integer of more digits than Python converts.
        raise BadRequest("Request body is not valid JSON") from None
    _check_tree(document)
    return document


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def _finite_float(text: str) -> float:
    """1e400 is valid JSON but overflows to infinity, which could not be sent back as JSON."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """FHIR JSON forbids repeated property names; accepting them would let two readers of
    one body (validator, indexer) see different values."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise BadRequest("Request body repeats a JSON property name")
    return result


def _check_tree(document: Any) -> None:
    """Depth bound, and no lone UTF-16 surrogates (valid JSON escapes, but not Unicode:
    they could not be stored or returned)."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest("Request body is nested too deeply")
        if isinstance(node, dict):
            for key, value in node.items():
                _check_text(key)
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
        elif isinstance(node, str):
            _check_text(node)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("Request body holds an invalid Unicode escape") from None


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
