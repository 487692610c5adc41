"""Helpers for end-to-end ingestion tests: corpus examples, table snapshots, outcomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import text

from vault.services import Services

# Every table a submission writes to; a refused one must leave them all as they were.
STORED_TABLES = (
    "patients",
    "patient_keys",
    "documents",
    "document_versions",
    "binaries",
    "blob_chunks",
    "submission_sets",
    "submission_set_members",
)


def corpus_text(corpus: Path, name: str, **replace: str) -> str:
    """An example as published, with references to resources of the example's own server
    (``Patient/ex-patient``) replaced by this vault's ids."""
    body = (corpus / name).read_text(encoding="utf-8")
    for old, new in replace.items():
        body = body.replace(old, new)
    return body


def corpus_json(corpus: Path, name: str, **replace: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(corpus_text(corpus, name, **replace))
    return loaded


def snapshot(services: Services) -> dict[str, int]:
    with services.engine.connect() as connection:
        counts = {
            table: connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
            for table in STORED_TABLES
        }
        counts["audit_entries"] = connection.execute(
            text("SELECT count(*) FROM audit_entries")
        ).scalar_one()
    return counts


def failed_audit_entries(services: Services) -> list[dict[str, Any]]:
    with services.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT action, outcome, detail FROM audit_entries WHERE outcome = 'failed'")
        ).mappings()
        return [dict(row) for row in rows]


def issue(response: Any) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    first: dict[str, Any] = body["issue"][0]
    return first


def assert_refused(
    services: Services,
    before: dict[str, int],
    response: Any,
    status: int,
    *,
    says: str,
    where: str | None = None,
    outcome: str = "failed",
) -> dict[str, Any]:
    """Refused with an OperationOutcome, nothing stored, and one audit entry: 'failed', or
    the ``outcome`` given ('denied' for a refusal of access)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    found = issue(response)
    assert found["severity"] == "error"
    assert says in found["diagnostics"], found
    assert "Traceback" not in response.text
    if where is not None:
        assert found["expression"] == [where], found
    after = snapshot(services)
    assert {k: v for k, v in after.items() if k != "audit_entries"} == {
        k: v for k, v in before.items() if k != "audit_entries"
    }
    assert after["audit_entries"] == before["audit_entries"] + 1
    assert last_audit_outcome(services) == outcome
    return found


def last_audit_outcome(services: Services) -> str:
    with services.engine.connect() as connection:
        outcome: str = connection.execute(
            text("SELECT outcome FROM audit_entries ORDER BY id DESC LIMIT 1")
        ).scalar_one()
    return outcome


def response_entries(response: Any) -> list[dict[str, Any]]:
    body = response.json()
    assert body["resourceType"] == "Bundle", body
    assert body["type"] == "transaction-response"
    return [entry["response"] for entry in body["entry"]]


def warnings_of(entry: dict[str, Any]) -> list[str]:
    outcome = entry.get("outcome") or {"issue": []}
    return [issue["diagnostics"] for issue in outcome["issue"] if issue["severity"] == "warning"]


def download(client: Any, headers: dict[str, str], location: str) -> Any:
    """GET /fhir/Binary/{id} as a document consumer (ITI-68) would."""
    binary_id = location.split("Binary/")[1].split("/", maxsplit=1)[0]
    plain = {key: value for key, value in headers.items() if key != "Content-Type"}
    return client.get(f"/fhir/Binary/{binary_id}", headers=plain)


def document_content(client: Any, headers: dict[str, str], location: str) -> Any:
    """The content of the DocumentReference at ``location``, through its attachment.url."""
    path = location.split("/_history/", maxsplit=1)[0]
    plain = {key: value for key, value in headers.items() if key != "Content-Type"}
    reference = client.get(f"/fhir/{path}", headers=plain)
    assert reference.status_code == 200, reference.text
    return download(client, headers, reference.json()["content"][0]["attachment"]["url"])
