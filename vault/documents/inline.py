"""Documents carried inline, as base64 (``attachment.data``, ``Binary.data``): decoded once,
by the strict decoder, and kept out of the structural validation, which would decode them
again with its own.

fhir.resources takes every base64Binary the strict decoder takes (and more), so validating a
resource with such a value replaced by another valid one gives the same answer. A value the
strict decoder refuses stays in place, so its refusal is worded as it always was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vault.errors import InvalidResource
from vault.fhir import base64binary
from vault.fhir.validate import validate_resource

# A valid base64Binary standing in for a document's bytes while the rest is validated.
_STAND_IN = "AAAA"


@dataclass
class Decoded:
    """The bytes of each inline document of a request, by Bundle entry index (0 for a
    lone resource), next to the data they were decoded from."""

    by_entry: dict[int, tuple[str, bytes]] = field(default_factory=dict)

    def content(self, index: int, data: object) -> bytes | None:
        found = self.by_entry.get(index)
        return found[1] if found is not None and found[0] is data else None


def validate_resource_once(resource: dict[str, Any], *, expression: str) -> Decoded:
    """``validate_resource``, returning the document it carries decoded."""
    decoded = Decoded()
    validate_resource(_without_content(resource, 0, decoded), expression=expression)
    return decoded


def validate_bundle_once(bundle: dict[str, Any], *, expression: str) -> Decoded:
    """``validate_resource`` of a transaction, returning each entry's document decoded."""
    decoded = Decoded()
    entries = bundle.get("entry")
    if isinstance(entries, list):
        bundle = {
            **bundle,
            "entry": [
                _entry_without_content(item, index, decoded) for index, item in enumerate(entries)
            ],
        }
    validate_resource(bundle, expression=expression)
    return decoded


def _entry_without_content(item: Any, index: int, decoded: Decoded) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get("resource"), dict):
        return item
    resource = _without_content(item["resource"], index, decoded)
    return item if resource is item["resource"] else {**item, "resource": resource}


def _without_content(resource: dict[str, Any], index: int, decoded: Decoded) -> dict[str, Any]:
    kind = resource.get("resourceType")
    if kind == "Binary":
        data = _decode(resource.get("data"), index, decoded)
        return resource if data is None else {**resource, "data": _STAND_IN}
    if kind != "DocumentReference":
        return resource
    contents = resource.get("content")
    if not isinstance(contents, list) or not contents or not isinstance(contents[0], dict):
        return resource
    attachment = contents[0].get("attachment")
    if not isinstance(attachment, dict) or _decode(attachment.get("data"), index, decoded) is None:
        return resource
    first = {**contents[0], "attachment": {**attachment, "data": _STAND_IN}}
    return {**resource, "content": [first, *contents[1:]]}


def _decode(data: object, index: int, decoded: Decoded) -> bytes | None:
    if not isinstance(data, str):
        return None
    try:
        content = base64binary.decode(data, expression="")
    except InvalidResource:
        return None
    decoded.by_entry[index] = (data, content)
    return content
