"""A FHIR document (a Bundle of type ``document``) sent as a document's content.

Its bytes are stored exactly as sent; this only decides whether they are a FHIR document:
valid R4 JSON, and the rules of the Bundle resource that make a document one (bdl-9,
bdl-10, bdl-11 and the Composition first)."""

from __future__ import annotations

from typing import Any

from vault.errors import BadRequest, InvalidResource
from vault.fhir.validate import validate_resource
from vault.fhir.wire import FHIR_JSON_MEDIA_TYPES, media_type, parse_resource


def is_fhir_content(content_type: str) -> bool:
    return media_type(content_type) in FHIR_JSON_MEDIA_TYPES


def check_document(content: bytes, *, expression: str) -> None:
    where = f"{expression}(Bundle)"
    try:
        bundle = parse_resource(content)
    except BadRequest as error:
        raise InvalidResource(f"FHIR content: {error.message}", expression=expression) from None
    if bundle["resourceType"] != "Bundle" or bundle.get("type") != "document":
        raise InvalidResource(
            "FHIR content (application/fhir+json) must be a Bundle of type document",
            expression=expression,
        )
    validate_resource(bundle, expression=where)
    identifier = bundle.get("identifier") or {}
    if not (identifier.get("system") and identifier.get("value")):
        raise InvalidResource(
            "A FHIR document has an identifier with system and value (bdl-9)",
            expression=f"{where}.identifier",
        )
    if not bundle.get("timestamp"):
        raise InvalidResource(
            "A FHIR document has a timestamp (bdl-10)", expression=f"{where}.timestamp"
        )
    entries: list[dict[str, Any]] = bundle.get("entry") or []
    if not entries or (entries[0].get("resource") or {}).get("resourceType") != "Composition":
        raise InvalidResource(
            "A FHIR document starts with a Composition (bdl-11)", expression=f"{where}.entry[0]"
        )
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        full_url = entry.get("fullUrl")
        if not full_url or not entry.get("resource"):
            raise InvalidResource(
                "Every entry of a FHIR document has a fullUrl and a resource",
                expression=f"{where}.entry[{index}]",
            )
        if full_url in seen:
            raise InvalidResource(
                "fullUrl must be unique in a Bundle (bdl-7)",
                expression=f"{where}.entry[{index}].fullUrl",
            )
        seen.add(full_url)
