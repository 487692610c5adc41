"""Structural validation with fhir.resources (R4B models, wire-compatible with R4)."""

from __future__ import annotations

import importlib
import re
from typing import Any

from pydantic import ValidationError

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
        model.model_validate(resource)
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
    except (ValueError, TypeError) as error:
        raise InvalidResource(
            f"{resource_type} is not valid FHIR R4: {type(error).__name__}",
            expression=expression or str(resource_type),
        ) from None


def _fhirpath(prefix: str, location: tuple[int | str, ...]) -> str:
    """``('content', 0, 'attachment')`` as ``content[0].attachment``."""
    path = prefix
    for part in location:
        if part == "__root__":
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
