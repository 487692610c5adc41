from __future__ import annotations

from typing import Any
from uuid import uuid4

from vault.models.base import utcnow
from vault.submissions.ingest import EntryResult


def searchset(
    base: str,
    resources: list[dict[str, Any]],
    self_url: str,
    next_url: str | None,
) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    entries = []
    for resource in resources:
        entries.append(
            {
                "fullUrl": f"{base}/fhir/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
        )
    # No exact total: counting every match of a large record costs more than the page.
    return {
        "resourceType": "Bundle",
        "id": str(uuid4()),
        "meta": {"lastUpdated": utcnow().isoformat()},
        "type": "searchset",
        "link": links,
        "entry": entries,
    }


def history_bundle(base: str, versions: list[dict[str, Any]], self_url: str) -> dict[str, Any]:
    """A ``history`` Bundle, newest first. FHIR requires each entry to say how the version
    came about (request) and what the server answered (response)."""
    entries = []
    for resource in versions:
        meta = resource.get("meta") or {}
        version = str(meta.get("versionId", "1"))
        first = version == "1"
        entries.append(
            {
                "fullUrl": f"{base}/fhir/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "request": {
                    "method": "POST" if first else "PATCH",
                    "url": resource["resourceType"]
                    if first
                    else f"{resource['resourceType']}/{resource['id']}",
                },
                "response": {
                    "status": "201 Created" if first else "200 OK",
                    "etag": f'W/"{version}"',
                    **({"lastModified": meta["lastUpdated"]} if meta.get("lastUpdated") else {}),
                },
            }
        )
    return {
        "resourceType": "Bundle",
        "id": str(uuid4()),
        "meta": {"lastUpdated": utcnow().isoformat()},
        "type": "history",
        "link": [{"relation": "self", "url": self_url}],
        "entry": entries,
    }


def transaction_response(results: list[EntryResult]) -> dict[str, Any]:
    entries = []
    for result in results:
        location = f"{result.resource_type}/{result.id}"
        if result.versioned_location:
            location += f"/_history/{result.version}"
        response: dict[str, Any] = {
            "status": "201 Created" if result.created else "200 OK",
            "location": location,
        }
        if result.version is not None:
            response["etag"] = f'W/"{result.version}"'
        if result.last_modified:
            response["lastModified"] = result.last_modified
        if result.warnings:
            response["outcome"] = {
                "resourceType": "OperationOutcome",
                "issue": [
                    {"severity": "warning", "code": "informational", "diagnostics": w}
                    for w in result.warnings
                ],
            }
        entries.append({"response": response})
    return {
        "resourceType": "Bundle",
        "id": str(uuid4()),
        "meta": {
            "profile": [
                "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.ProvideDocumentBundleResponse"
            ]
        },
        "type": "transaction-response",
        "entry": entries,
    }
