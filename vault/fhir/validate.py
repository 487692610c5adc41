"""Structural validation with fhir.resources (R4B models, wire-compatible with R4)."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from vault.errors import InvalidResource

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
        location = ".".join(str(part) for part in first["loc"] if part != "__root__")
        where = ".".join(filter(None, [expression or str(resource_type), location]))
        raise InvalidResource(
            f"{resource_type} is not valid FHIR R4: {first['msg']}", expression=where
        ) from None
    except (ValueError, TypeError) as error:
        raise InvalidResource(
            f"{resource_type} is not valid FHIR R4: {type(error).__name__}",
            expression=expression or str(resource_type),
        ) from None
