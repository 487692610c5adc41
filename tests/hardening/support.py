"""Shared checks of the hardening tests: what is stored, and what a refusal looks like."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

# Every table a submission, an upload or a patient creation writes to.
STORED = (
    "patients",
    "patient_keys",
    "documents",
    "document_versions",
    "binaries",
    "blob_chunks",
    "submission_sets",
)


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
            for table in STORED
        }


def assert_outcome(response: Any, status: int | None = None) -> dict[str, Any]:
    """A 4xx FHIR OperationOutcome that says what is wrong and shows no internals."""
    if status is None:
        assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    else:
        assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    issue: dict[str, Any] = body["issue"][0]
    assert issue["severity"] == "error"
    assert issue["diagnostics"]
    for leak in ("Traceback", "sqlalchemy", "psycopg", 'File "', "Error:"):
        assert leak not in response.text, response.text[:500]
    return issue
