"""ITI-68 Retrieve Document and DocumentReference reads: the bytes exactly as sent, with their
own content type, and nothing to whoever may not read them."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from tests.factories import OTHER_DOCTOR, create_patient, publish
from vault.storage.crypto import DEFAULT_SEGMENT_SIZE


def _binary_url(stored: dict) -> str:
    return "/fhir/" + stored["content"][0]["attachment"]["url"]


@pytest.mark.parametrize(
    "size",
    [1, DEFAULT_SEGMENT_SIZE - 1, DEFAULT_SEGMENT_SIZE, 2 * DEFAULT_SEGMENT_SIZE + 5],
)
def test_the_bytes_come_back_identical_across_segment_boundaries(client, tokens, size):
    patient_id, ins_value = create_patient(client, tokens)
    content = os.urandom(size)
    stored = publish(
        client, tokens.professional(), patient_id, content, content_type="application/octet-stream"
    )

    response = client.get(_binary_url(stored), headers=tokens.patient(ins_value))

    assert response.status_code == 200
    assert response.content == content
    assert response.headers["Content-Length"] == str(size)
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/plain; charset=ISO-8859-1", "image/jpeg"]
)
def test_the_content_type_is_returned_exactly_as_it_was_sent(client, tokens, content_type):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(
        client, tokens.professional(), patient_id, b"caf\xe9", content_type=content_type
    )

    response = client.get(_binary_url(stored), headers=tokens.patient(ins_value))

    assert response.headers["Content-Type"] == content_type
    assert response.content == b"caf\xe9"


@pytest.mark.parametrize("accept", ["application/fhir+json", "application/json"])
@pytest.mark.parametrize("size", [1, 2, 3, 4, DEFAULT_SEGMENT_SIZE + 1])
def test_asking_for_fhir_json_returns_a_binary_resource(client, tokens, accept, size):
    patient_id, ins_value = create_patient(client, tokens)
    content = os.urandom(size)
    stored = publish(client, tokens.professional(), patient_id, content, content_type="image/png")

    response = client.get(
        _binary_url(stored), headers={**tokens.patient(ins_value), "Accept": accept}
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    resource = response.json()
    assert resource["resourceType"] == "Binary"
    assert resource["id"] == stored["content"][0]["attachment"]["url"].rpartition("/")[2]
    assert resource["contentType"] == "image/png"
    assert base64.b64decode(resource["data"], validate=True) == content


def test_a_superseded_documents_content_stays_readable(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 first")
    client.patch(
        f"/fhir/DocumentReference/{stored['id']}",
        json=[{"op": "replace", "path": "/status", "value": "superseded"}],
        headers={**tokens.professional(), "Content-Type": "application/json-patch+json"},
    )

    response = client.get(_binary_url(stored), headers=tokens.patient(ins_value))

    assert response.content == b"%PDF-1.7 first"


def test_another_patients_document_and_content_are_invisible(client, tokens):
    patient_id, _ = create_patient(client, tokens, seed=1)
    _, other_ins = create_patient(client, tokens, seed=2)
    stored = publish(client, tokens.professional(), patient_id)
    intruder = tokens.patient(other_ins)

    for seen_path, absent_path in (
        (f"/fhir/DocumentReference/{stored['id']}", "/fhir/DocumentReference/no-such-id"),
        (_binary_url(stored), "/fhir/Binary/no-such-id"),
    ):
        seen = client.get(seen_path, headers=intruder)
        absent = client.get(absent_path, headers=intruder)
        assert seen.status_code == 404
        assert seen.json() == absent.json()
        assert b"PDF" not in seen.content


def test_a_professional_reads_back_only_what_they_authored(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 mine")

    own = client.get(_binary_url(stored), headers=tokens.professional())
    other = client.get(_binary_url(stored), headers=tokens.professional(OTHER_DOCTOR))
    other_read = client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional(OTHER_DOCTOR)
    )

    assert own.content == b"%PDF-1.7 mine"
    assert other.status_code == 404
    assert other_read.status_code == 404


def test_a_read_carries_the_version_etag_and_last_modified(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)

    response = client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value)
    )

    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Last-Modified"].endswith(" GMT")
    assert (
        response.json()["content"][0]["attachment"]["url"]
        == stored["content"][0]["attachment"]["url"]
    )
    assert "data" not in response.json()["content"][0]["attachment"]


def test_the_stored_resource_records_size_and_sha1_of_the_content(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    content = b"%PDF-1.7 hashed"
    stored = publish(client, tokens.professional(), patient_id, content, with_hash=False)

    attachment = client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value)
    ).json()["content"][0]["attachment"]

    assert attachment["size"] == len(content)
    assert (
        base64.b64decode(attachment["hash"])
        == hashlib.sha1(content, usedforsecurity=False).digest()
    )


def test_downloaded_html_cannot_run_script_against_the_vault(client, tokens):
    from tests.factories import create_patient, publish  # noqa: PLC0415

    patient_id, ins_value = create_patient(client, tokens, 71)
    stored = publish(
        client,
        tokens.professional(),
        patient_id,
        b"<script>alert(1)</script>",
        content_type="text/html",
    )
    url = stored["content"][0]["attachment"]["url"]
    response = client.get(f"/fhir/{url}", headers=tokens.patient(ins_value))
    assert response.status_code == 200
    assert response.headers["content-security-policy"].startswith("sandbox")
    assert response.headers["x-content-type-options"] == "nosniff"
