"""Structural validation with fhir.resources (R4B models, wire-compatible with R4)."""

from __future__ import annotations

import importlib
import re
from datetime import date, time
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from vault.errors import InvalidResource
from vault.fhir import base64binary

_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")

_MODULES = {
    "DocumentReference": "documentreference",
    "Binary": "binary",
    "Bundle": "bundle",
    "List": "list",
    "Patient": "patient",
    "Parameters": "parameters",
}


def validate_resource(resource: dict[str, Any], *, expression: str = "") -> None:
    """Raise InvalidResource with the first problem's FHIRPath-ish location."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not _RESOURCE_TYPE.fullmatch(resource_type):
        raise InvalidResource("resourceType is not a FHIR resource type", expression=expression)
    module_name = _MODULES.get(str(resource_type), str(resource_type).lower())
    try:
        module = importlib.import_module(f"fhir.resources.R4B.{module_name}")
        model = getattr(module, str(resource_type))
    except (ImportError, AttributeError):
        raise InvalidResource(
            f"Unknown resourceType {resource_type!r}", expression=expression
        ) from None
    try:
        validated = model.model_validate(resource)
    except ValidationError as error:
        first = error.errors()[0]
        where = _fhirpath(expression or str(resource_type), first["loc"])
        if first["type"] == "base64_decode":
            # fhir.resources' decoder is laxer than the specification and vaguer about why;
            # ours is neither, and refuses whatever it refused.
            base64binary.decode(first.get("input"), expression=where)
        raise InvalidResource(
            f"{resource_type} is not valid FHIR R4: {first['msg']}", expression=where
        ) from None
    except (ValueError, TypeError, AttributeError) as error:
        # AttributeError: fhir_core's url type calls str methods on a value its own string
        # check just refused (an attachment url of false).
        raise InvalidResource(
            f"{resource_type} is not valid FHIR R4: {type(error).__name__}",
            expression=expression or str(resource_type),
        ) from None
    _require_time_strings(validated, resource, expression or str(resource_type))


def _require_time_strings(model: BaseModel, given: Any, path: str) -> None:
    """The models read a JSON number in a date, dateTime, instant or time element as a Unix
    time; in FHIR JSON those are strings, and a number there is a sender's bug that would be
    stored as a date nobody wrote. Walks the JSON beside the model validated from it; a
    string needs no look (it is either not a time or a time written right)."""
    if not isinstance(given, dict):
        return
    names = _attribute_names(type(model))
    for key, raw in given.items():
        name = names.get(key)
        if name is not None and not isinstance(raw, str):
            _check_value(getattr(model, name), raw, f"{path}.{key}")


@cache
def _attribute_names(model: type[BaseModel]) -> dict[str, str]:
    """JSON name to attribute name (``class`` to ``class_fhir``)."""
    return {field.alias or name: name for name, field in model.model_fields.items()}


def _check_value(value: Any, given: Any, path: str) -> None:
    if isinstance(value, BaseModel):
        _require_time_strings(value, given, path)
    elif isinstance(value, list) and isinstance(given, list):
        for index, (item, raw) in enumerate(zip(value, given, strict=False)):
            _check_value(item, raw, f"{path}[{index}]")
    elif isinstance(value, date | time) and not isinstance(given, str):
        raise InvalidResource(
            "A date, dateTime, instant or time must be a string in FHIR JSON", expression=path
        )


def _fhirpath(prefix: str, location: tuple[int | str, ...]) -> str:
    """``('content', 0, 'attachment')`` as ``content[0].attachment``."""
    path = prefix
    for part in location:
        if part == "__root__":
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
