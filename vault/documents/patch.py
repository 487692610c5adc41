"""Metadata updates: FHIRPath Patch (``Parameters``, as MHD/PDSm use) and JSON Patch, limited
to what may change on a stored document: ``status`` and ``securityLabel``."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from vault.errors import BadRequest, InvalidResource

PATCHABLE = frozenset({"status", "securityLabel"})


@dataclass(frozen=True)
class Operation:
    kind: str  # add | replace | delete (FHIRPath), add | replace | remove (JSON Patch)
    field: str
    index: int | None
    value: Any


def parse_fhirpath_patch(parameters: dict[str, Any]) -> list[Operation]:
    if parameters.get("resourceType") != "Parameters":
        raise BadRequest("A FHIRPath Patch is a Parameters resource")
    operations = []
    for number, parameter in enumerate(parameters.get("parameter") or []):
        where = f"Parameters.parameter[{number}]"
        if parameter.get("name") != "operation":
            raise InvalidResource("Only 'operation' parameters are allowed", expression=where)
        parts = {part.get("name"): part for part in parameter.get("part") or []}
        kind = (parts.get("type") or {}).get("valueCode")
        path = str((parts.get("path") or {}).get("valueString") or "")
        name = str((parts.get("name") or {}).get("valueString") or "")
        value_part = parts.get("value") or {}
        value = next((v for k, v in value_part.items() if k.startswith("value")), None)
        if kind not in ("add", "replace", "delete"):
            raise InvalidResource(
                "Supported operation types: add, replace, delete", expression=where
            )
        field = path.removeprefix("DocumentReference.")
        index = None
        if kind == "add":
            field = name or field
        if field.startswith("securityLabel[") and field.endswith("]"):
            index = _index(field[len("securityLabel[") : -1], where)
            field = "securityLabel"
        if field not in PATCHABLE:
            raise InvalidResource("Only status and securityLabel can be changed", expression=where)
        operations.append(Operation(kind, field, index, value))
    if not operations:
        raise InvalidResource("The patch contains no operation", expression="Parameters")
    return operations


def parse_json_patch(document: Any) -> list[Operation]:
    if not isinstance(document, list):
        raise BadRequest("A JSON Patch is an array of operations")
    operations = []
    for number, item in enumerate(document):
        where = f"[{number}]"
        if not isinstance(item, dict) or item.get("op") not in ("add", "replace", "remove", "test"):
            raise InvalidResource("Supported ops: add, replace, remove, test", expression=where)
        if item["op"] == "test":
            continue
        parts = str(item.get("path", "")).split("/")[1:]
        if not parts or parts[0] not in PATCHABLE or len(parts) > 2:
            raise InvalidResource(
                "Only /status and /securityLabel can be changed", expression=where
            )
        index: int | None = None
        if len(parts) == 2:
            index = -1 if parts[1] == "-" else _index(parts[1], where)
        kind = "delete" if item["op"] == "remove" else str(item["op"])
        operations.append(Operation(kind, parts[0], index, item.get("value")))
    if not operations:
        raise InvalidResource("The patch contains no change", expression="[]")
    return operations


def _index(text: str, where: str) -> int:
    if not text.isdigit():
        raise InvalidResource("Invalid list index", expression=where)
    return int(text)


def changes_for(resource: dict[str, Any], operations: list[Operation]) -> dict[str, Any]:
    """The new values of the patched fields (None removes a field)."""
    result: dict[str, Any] = {}
    labels = copy.deepcopy(resource.get("securityLabel") or [])
    for operation in operations:
        if operation.field == "status":
            if operation.kind == "delete":
                raise InvalidResource("status cannot be removed", expression="status")
            result["status"] = operation.value
            continue
        labels = _patch_labels(labels, operation)
        result["securityLabel"] = labels or None
    return result


def _patch_labels(labels: list[Any], operation: Operation) -> list[Any]:
    if operation.kind == "delete":
        if operation.index is None:
            return []
        if operation.index >= len(labels):
            raise InvalidResource("No securityLabel at that index", expression="securityLabel")
        return [*labels[: operation.index], *labels[operation.index + 1 :]]
    if operation.index is None:
        if operation.kind == "replace" or isinstance(operation.value, list):
            value = operation.value if isinstance(operation.value, list) else [operation.value]
            return [_concept(item) for item in value]
        return [*labels, _concept(operation.value)]
    if operation.kind == "add":
        position = len(labels) if operation.index < 0 else operation.index
        return [*labels[:position], _concept(operation.value), *labels[position:]]
    if operation.index >= len(labels):
        raise InvalidResource("No securityLabel at that index", expression="securityLabel")
    return [*labels[: operation.index], _concept(operation.value), *labels[operation.index + 1 :]]


def _concept(value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and isinstance(value.get("coding"), list):
        return value
    if isinstance(value, dict) and value.get("code"):
        return {"coding": [value]}
    raise InvalidResource("securityLabel values are CodeableConcepts", expression="securityLabel")
