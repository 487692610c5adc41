"""In-bundle reference resolution as FHIR R4 defines it (bundle.html#references)."""

from __future__ import annotations

import pytest

from vault.fhir.references import BundleIndex, local, split_restful

INDEX = BundleIndex(
    {
        "urn:uuid:0c1a6c4e-3c5f-4b8b-9a0e-1d2c3b4a5f60": 0,
        "urn:oid:1.2.3.4.5": 1,
        "http://localhost:9556/svc/fhir/Patient/a2": 2,
        "http://localhost:9556/svc/fhir/Binary/1e404af3": 3,
    }
)


@pytest.mark.parametrize(
    ("reference", "container", "expected"),
    [
        ("urn:uuid:0c1a6c4e-3c5f-4b8b-9a0e-1d2c3b4a5f60", None, 0),
        ("urn:oid:1.2.3.4.5", "urn:uuid:other", 1),
        ("http://localhost:9556/svc/fhir/Patient/a2", None, 2),
        ("http://localhost:9556/svc/fhir/Patient/a2/_history/3", None, 2),
        # Relative, inside an entry whose fullUrl is RESTful: resolved against its base.
        ("Patient/a2", "http://localhost:9556/svc/fhir/DocumentReference/d1", 2),
        ("Binary/1e404af3", "http://localhost:9556/svc/fhir/DocumentReference/d1", 3),
        # Relative, inside an entry with a urn fullUrl: a resource on the server.
        ("Patient/a2", "urn:uuid:0c1a6c4e-3c5f-4b8b-9a0e-1d2c3b4a5f60", None),
        ("Patient/a2", None, None),
        # Another base is another server.
        ("Patient/a2", "http://example.org/fhir/DocumentReference/d1", None),
        ("urn:uuid:not-in-the-bundle", None, None),
        ("#contained", "http://localhost:9556/svc/fhir/DocumentReference/d1", None),
        ("Patient?identifier=a|b", None, None),
    ],
)
def test_references_resolve_to_the_entry_fhir_says_they_name(
    reference: str, container: str | None, expected: int | None
) -> None:
    assert INDEX.resolve(reference, from_full_url=container) == expected


@pytest.mark.parametrize(
    ("reference", "parts"),
    [
        ("Patient/123", (None, "Patient", "123")),
        ("Patient/123/_history/2", (None, "Patient", "123")),
        (
            "https://vault.example/fhir/Patient/a-b.c",
            ("https://vault.example/fhir/", "Patient", "a-b.c"),
        ),
        ("urn:uuid:1234", None),
        ("Patient", None),
        ("Patient/has space", None),
        ("patient/123", None),
        ("Patient/" + "x" * 65, None),
    ],
)
def test_restful_references_split_into_base_type_and_id(
    reference: str, parts: tuple[str | None, str, str] | None
) -> None:
    assert split_restful(reference) == parts


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("DocumentReference/abc", ("DocumentReference", "abc")),
        ("https://vault.example/fhir/DocumentReference/abc", ("DocumentReference", "abc")),
        ("https://vault.example/fhir/Patient/p1/_history/2", ("Patient", "p1")),
        ("https://elsewhere.example/fhir/DocumentReference/abc", None),
        ("urn:uuid:0c1a6c4e-3c5f-4b8b-9a0e-1d2c3b4a5f60", None),
        ("#contained", None),
    ],
)
def test_only_relative_references_and_this_servers_urls_are_local(
    reference: str, expected: tuple[str, str] | None
) -> None:
    assert local(reference, "https://vault.example/fhir/") == expected
