"""What makes FHIR content a FHIR document: a valid R4 Bundle of type document with an
identifier (bdl-9), a timestamp (bdl-10), a Composition first (bdl-11) and unique fullUrls."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vault.errors import InvalidResource
from vault.fhir.document_bundle import check_document, is_fhir_content


def document(**changes: Any) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "identifier": {
            "system": "urn:ietf:rfc:3986",
            "value": "urn:uuid:5b8d3e35-1f4e-4c1e-9a55-0d3c1a2b3c4d",
        },
        "type": "document",
        "timestamp": "2026-11-20T10:00:00+01:00",
        "entry": [
            {
                "fullUrl": "urn:uuid:0f0e7d8c-1b2a-4c3d-8e9f-a0b1c2d3e4f5",
                "resource": {
                    "resourceType": "Composition",
                    "status": "final",
                    "type": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]},
                    "date": "2026-11-20T10:00:00+01:00",
                    "author": [{"display": "Laboratoire"}],
                    "title": "Compte rendu",
                },
            },
            {
                "fullUrl": "urn:uuid:1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}]},
                },
            },
        ],
    }
    bundle.update(changes)
    return {key: value for key, value in bundle.items() if value is not None}


def test_a_fhir_document_passes() -> None:
    check_document(json.dumps(document()).encode(), expression="x")


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"type": "collection"}, "Bundle of type document"),
        ({"resourceType": "Composition"}, "Bundle of type document"),
        ({"identifier": None}, "bdl-9"),
        ({"identifier": {"value": "no-system"}}, "bdl-9"),
        ({"timestamp": None}, "bdl-10"),
        ({"entry": []}, "bdl-11"),
        ({"entry": document()["entry"][1:]}, "bdl-11"),
        (
            {"entry": [document()["entry"][0], {**document()["entry"][1], "fullUrl": None}]},
            "fullUrl",
        ),
        (
            {
                "entry": [
                    document()["entry"][0],
                    {**document()["entry"][1], "fullUrl": document()["entry"][0]["fullUrl"]},
                ]
            },
            "bdl-7",
        ),
        ({"timestamp": "not a time"}, "not valid FHIR R4"),
    ],
)
def test_what_is_not_a_fhir_document_is_refused(changes: dict[str, Any], says: str) -> None:
    sent = document(**changes)
    for entry in sent.get("entry", []):
        if entry.get("fullUrl") is None:
            entry.pop("fullUrl", None)
    with pytest.raises(InvalidResource, match=says):
        check_document(json.dumps(sent).encode(), expression="x")


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"a": 1}'])
def test_content_that_is_not_fhir_json_is_refused(content: bytes) -> None:
    with pytest.raises(InvalidResource, match="FHIR content"):
        check_document(content, expression="x")


@pytest.mark.parametrize(
    ("content_type", "fhir"),
    [
        ("application/fhir+json", True),
        ("application/fhir+json; fhirVersion=4.0", True),
        ("application/json+fhir", True),
        ("application/json", False),
        ("application/pdf", False),
    ],
)
def test_only_fhir_media_types_are_read_as_fhir(content_type: str, fhir: bool) -> None:
    assert is_fhir_content(content_type) is fhir
