"""Metadata updates: FHIRPath Patch (``Parameters``, as MHD/PDSm use) and JSON Patch, limited
to what may change on a stored document: ``status`` and ``securityLabel``.

Both syntaxes parse into the same operations, applied in order to a copy of the current
values, so a failed ``test`` or a bad index leaves the document untouched.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from vault.errors import BadRequest, Conflict, InvalidResource

PATCHABLE = frozenset({"status", "securityLabel"})

# DocumentReference.status, .securityLabel, .securityLabel[2],
# .securityLabel.where(coding.code='R')
_FHIRPATH = re.compile(
    r"^(?:DocumentReference\.)?(?P<field>[A-Za-z]+)"
    r"(?:\[(?P<index>[0-9]+)\]|\.where\(\s*coding\.code\s*=\s*'(?P<code>[^']*)'\s*\))?$"
)


@dataclass(frozen=True)
class Operation:
    kind: str  # add | insert | replace | delete | test
    field: str  # status | securityLabel
    # A securityLabel position (-1: after the last); None: the field as a whole.
    index: int | None = None
    value: Any = None
    # securityLabel.where(coding.code='...'): the labels carrying this code.
    label_code: str | None = None


# -- FHIRPath Patch ---------------------------------------------------------------------


def parse_fhirpath_patch(parameters: dict[str, Any]) -> list[Operation]:
    if parameters.get("resourceType") != "Parameters":
        raise BadRequest("A FHIRPath Patch is a Parameters resource")
    given = parameters.get("parameter") or []
    if not isinstance(given, list):
        raise InvalidResource("Parameters.parameter is a list", expression="Parameters.parameter")
    operations = []
    for number, parameter in enumerate(given):
        where = f"Parameters.parameter[{number}]"
        if not isinstance(parameter, dict) or parameter.get("name") != "operation":
            raise InvalidResource("Only 'operation' parameters are allowed", expression=where)
        operations.append(_fhirpath_operation(parameter, where))
    if not operations:
        raise InvalidResource("The patch contains no operation", expression="Parameters")
    return operations


def _fhirpath_operation(parameter: dict[str, Any], where: str) -> Operation:
    given = parameter.get("part") or []
    if not isinstance(given, list):
        raise InvalidResource("An operation's part is a list", expression=where)
    parts = {part.get("name"): part for part in given if isinstance(part, dict)}
    kind = _part_value(parts, "type")
    if kind not in ("add", "insert", "replace", "delete"):
        raise InvalidResource(
            "Supported operation types: add, insert, replace, delete", expression=where
        )
    path = str(_part_value(parts, "path") or "")
    if kind == "add":
        # add names the new child under its parent: path DocumentReference, name securityLabel.
        if path.removeprefix("DocumentReference") not in ("", "."):
            raise InvalidResource(
                "add applies to DocumentReference itself (with a name)", expression=where
            )
        path = str(_part_value(parts, "name") or "")
    match = _FHIRPATH.fullmatch(path)
    if match is None or match["field"] not in PATCHABLE:
        raise InvalidResource("Only status and securityLabel can be changed", expression=where)
    field = match["field"]
    index = _index(match["index"], where) if match["index"] is not None else None
    label_code = match["code"]
    if field == "status" and (index is not None or label_code is not None):
        raise InvalidResource("status is a single value", expression=where)
    if kind == "add" and (index is not None or label_code is not None):
        raise InvalidResource("add takes a plain element name", expression=where)
    if kind == "insert":
        if field != "securityLabel" or index is not None or label_code is not None:
            raise InvalidResource(
                "insert applies to DocumentReference.securityLabel", expression=where
            )
        index = _part_value(parts, "index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise InvalidResource("insert needs a non-negative index", expression=where)
    value = _part_value(parts, "value")
    if kind != "delete" and value is None:
        raise InvalidResource(f"{kind} needs a value[x]", expression=where)
    return Operation(kind, field, index, value, label_code)


def _part_value(parts: dict[Any, dict[str, Any]], name: str) -> Any:
    part = parts.get(name) or {}
    return next((v for k, v in part.items() if k.startswith("value")), None)


# -- JSON Patch (RFC 6902) --------------------------------------------------------------


def parse_json_patch(document: Any) -> list[Operation]:
    if not isinstance(document, list):
        raise BadRequest("A JSON Patch is an array of operations")
    operations = []
    for number, item in enumerate(document):
        where = f"[{number}]"
        if not isinstance(item, dict) or item.get("op") not in ("add", "replace", "remove", "test"):
            raise InvalidResource("Supported ops: add, replace, remove, test", expression=where)
        op = str(item["op"])
        field, index = _json_pointer(item.get("path"), where)
        if op != "remove" and "value" not in item:
            raise InvalidResource(f"{op} needs a value", expression=where)
        if index == -1 and op != "add":
            raise InvalidResource("'-' is only valid for add", expression=where)
        whole_list = field == "securityLabel" and index is None
        if whole_list and op != "remove" and not isinstance(item["value"], list):
            raise InvalidResource("/securityLabel is an array", expression=where)
        if op == "add" and field == "securityLabel" and index is None:
            # RFC 6902: add on an existing member replaces it.
            op = "replace"
        kind = {"remove": "delete", "add": "insert"}.get(op, op)
        if kind == "insert" and field == "status":
            kind = "replace"
        operations.append(Operation(kind, field, index, item.get("value")))
    if not any(operation.kind != "test" for operation in operations):
        raise InvalidResource("The patch contains no change", expression="[]")
    return operations


def _json_pointer(path: Any, where: str) -> tuple[str, int | None]:
    parts = str(path or "").split("/")
    if parts[0] != "" or len(parts) not in (2, 3) or parts[1] not in PATCHABLE:
        raise InvalidResource("Only /status and /securityLabel can be changed", expression=where)
    if len(parts) == 2:
        return parts[1], None
    if parts[1] == "status":
        raise InvalidResource("status is a single value", expression=where)
    if parts[2] == "-":
        return parts[1], -1
    # RFC 6901 array indices: no sign, no leading zero.
    if not re.fullmatch(r"0|[1-9][0-9]*", parts[2]):
        raise InvalidResource("Invalid array index", expression=where)
    return parts[1], _index(parts[2], where)


def _index(digits: str, where: str) -> int:
    # A document has at most a few labels; a longer number is no index of one (and past
    # 4300 digits Python would not even convert it).
    if len(digits) > 9:
        raise InvalidResource("No securityLabel at that index", expression=where)
    return int(digits)


# -- applying ---------------------------------------------------------------------------


def changes_for(resource: dict[str, Any], operations: list[Operation]) -> dict[str, Any]:
    """The new values of the patched fields (None removes a field). Raises before anything
    is returned if any operation does not apply."""
    status: Any = resource.get("status")
    labels: list[Any] = copy.deepcopy(resource.get("securityLabel") or [])
    touched: set[str] = set()
    for operation in operations:
        if operation.field == "status":
            status = _apply_status(status, operation)
        else:
            labels = _apply_labels(labels, operation)
        if operation.kind != "test":
            touched.add(operation.field)
    result: dict[str, Any] = {}
    if "status" in touched:
        result["status"] = status
    if "securityLabel" in touched:
        result["securityLabel"] = labels or None
    return result


def _apply_status(status: Any, operation: Operation) -> Any:
    if operation.kind == "delete":
        raise InvalidResource("status cannot be removed", expression="status")
    if operation.kind == "test":
        _test(status == operation.value)
        return status
    if not isinstance(operation.value, str):
        raise InvalidResource("status is a code", expression="status")
    return operation.value


def _apply_labels(labels: list[Any], operation: Operation) -> list[Any]:
    if operation.label_code is not None:
        return _apply_labels_by_code(labels, operation)
    if operation.index is None:
        return _apply_labels_whole(labels, operation)
    return _apply_labels_at(labels, operation, operation.index)


def _apply_labels_whole(labels: list[Any], operation: Operation) -> list[Any]:
    kind, value = operation.kind, operation.value
    if kind == "test":
        _test(labels == value)
        return labels
    if kind == "delete":
        return []
    if kind == "add":
        return [*labels, _concept(value)]
    values = value if isinstance(value, list) else [value]
    return [_concept(item) for item in values]


def _apply_labels_at(labels: list[Any], operation: Operation, index: int) -> list[Any]:
    kind, value = operation.kind, operation.value
    if kind == "insert":
        position = len(labels) if index == -1 else index
        if position > len(labels):
            raise InvalidResource("No securityLabel at that index", expression="securityLabel")
        return [*labels[:position], _concept(value), *labels[position:]]
    if index >= len(labels):
        raise InvalidResource("No securityLabel at that index", expression="securityLabel")
    if kind == "test":
        _test(labels[index] == value)
        return labels
    if kind == "delete":
        return [*labels[:index], *labels[index + 1 :]]
    return [*labels[:index], _concept(value), *labels[index + 1 :]]


def _apply_labels_by_code(labels: list[Any], operation: Operation) -> list[Any]:
    matching = [i for i, label in enumerate(labels) if operation.label_code in _codes(label)]
    if operation.kind == "delete":
        # Removing a label that is not there leaves the document as asked.
        return [label for i, label in enumerate(labels) if i not in matching]
    if len(matching) != 1:
        raise InvalidResource(
            "The path must select exactly one securityLabel", expression="securityLabel"
        )
    index = matching[0]
    return [*labels[:index], _concept(operation.value), *labels[index + 1 :]]


def _codes(label: Any) -> set[str]:
    if not isinstance(label, dict):
        return set()
    return {
        str(coding.get("code"))
        for coding in label.get("coding") or []
        if isinstance(coding, dict) and coding.get("code")
    }


def _concept(value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and isinstance(value.get("coding"), list) and _codes(value):
        return value
    if isinstance(value, dict) and value.get("code") and "coding" not in value:
        return {"coding": [value]}
    raise InvalidResource(
        "securityLabel values are coded CodeableConcepts", expression="securityLabel"
    )


def _test(passed: bool) -> None:
    if not passed:
        raise Conflict("A test operation of the patch does not hold for this document")
