from __future__ import annotations

from typing import Any


def operation_outcome(
    code: str, message: str, *, severity: str = "error", expression: str | None = None
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def with_warnings(resource: dict[str, Any], warnings: list[str]) -> dict[str, Any] | None:
    """An OperationOutcome listing warnings, for ``Prefer: return=OperationOutcome`` or a
    transaction entry's ``response.outcome``; None when there is nothing to say."""
    if not warnings:
        return None
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "warning", "code": "informational", "diagnostics": text}
            for text in warnings
        ],
    }
