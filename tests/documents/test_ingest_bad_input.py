"""Bad input to ITI-105 and ITI-65, over HTTP: each answer is an OperationOutcome with the
right status, nothing is stored, and the audit log gains one 'failed' entry -- the only trace
a refused submission leaves."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import create_patient, document_reference, provide_bundle
from tests.fhir.support import assert_refused, response_entries, snapshot
from vault.api.app import create_app

SMALL_LIMIT = 4096


@pytest.fixture
def patient_id(client, tokens) -> str:
    return create_patient(client, tokens)[0]


@pytest.fixture
def small_limit_client(services, settings) -> Iterator[TestClient]:
    """The vault with VAULT_MAX_BODY_BYTES=4096."""
    limited = settings.model_copy(update={"max_body_bytes": SMALL_LIMIT})
    app = create_app(limited, dataclasses.replace(services, settings=limited))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def bundle_for(patient_id: str, *documents: bytes) -> dict[str, Any]:
    return provide_bundle(
        {"reference": f"Patient/{patient_id}"}, [(content, "text/plain") for content in documents]
    )


def single(patient_id: str, **kw: Any) -> dict[str, Any]:
    return document_reference({"reference": f"Patient/{patient_id}"}, **kw)


# -- the body itself ----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/fhir", "/fhir/DocumentReference"])
@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"resourceType": "Bundle", "type": ', "not valid JSON"),
        (b"\xc3\x28", "UTF-8"),
        (b'{"resourceType": "DocumentReference", "status": "current", "status": "x"}', "repeats"),
        (b"[1, 2]", "no resourceType"),
    ],
)
def test_a_body_that_is_not_a_fhir_json_resource_is_a_bad_request(
    client, tokens, services, patient_id, url, body, says
) -> None:
    before = snapshot(services)
    response = client.post(url, content=body, headers=tokens.professional())
    assert_refused(services, before, response, 400, says=says)


@pytest.mark.parametrize(
    ("url", "resource", "says"),
    [
        ("/fhir", {"resourceType": "DocumentReference"}, "Expected Bundle, got DocumentReference"),
        ("/fhir/DocumentReference", {"resourceType": "Bundle"}, "Expected DocumentReference"),
    ],
)
def test_the_wrong_resource_type_is_a_bad_request(
    client, tokens, services, url, resource, says
) -> None:
    before = snapshot(services)
    response = client.post(url, json=resource, headers=tokens.professional())
    assert_refused(services, before, response, 400, says=says, where="resourceType")


@pytest.mark.parametrize("url", ["/fhir", "/fhir/DocumentReference"])
@pytest.mark.parametrize(
    "media_type", ["application/fhir+xml", "application/xml", "text/xml; charset=utf-8"]
)
def test_xml_is_an_unsupported_media_type(client, tokens, services, url, media_type) -> None:
    before = snapshot(services)
    headers = {**tokens.professional(), "Content-Type": media_type}
    response = client.post(url, content=b"<Bundle xmlns='http://hl7.org/fhir'/>", headers=headers)
    assert_refused(services, before, response, 415, says="XML is not supported")


def test_application_json_is_accepted_as_well_as_fhir_json(client, tokens, patient_id) -> None:
    headers = {**tokens.professional(), "Content-Type": "application/json; charset=utf-8"}
    published = client.post(
        "/fhir/DocumentReference", content=json.dumps(single(patient_id)), headers=headers
    )
    assert published.status_code == 201, published.text
    provided = client.post(
        "/fhir", content=json.dumps(bundle_for(patient_id, b"json")), headers=headers
    )
    assert provided.status_code == 200, provided.text
    assert provided.headers["content-type"].startswith("application/fhir+json")


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    small_limit_client, tokens, services, patient_id
) -> None:
    body = json.dumps(single(patient_id, content=b"x" * SMALL_LIMIT)).encode()
    before = snapshot(services)
    response = small_limit_client.post(
        "/fhir/DocumentReference", content=body, headers=tokens.professional()
    )
    assert_refused(services, before, response, 413, says=f"limit of {SMALL_LIMIT} bytes")


def test_a_streamed_body_over_the_limit_is_refused(
    small_limit_client, tokens, services, patient_id
) -> None:
    """No Content-Length (chunked): the bytes are counted as they arrive."""
    body = json.dumps(bundle_for(patient_id, b"y" * SMALL_LIMIT)).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    before = snapshot(services)
    response = small_limit_client.post("/fhir", content=chunks(), headers=tokens.professional())
    assert_refused(services, before, response, 413, says="exceeds the limit")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_body_expanding_past_the_limit_is_refused(
    small_limit_client, tokens, services, patient_id, encoding
) -> None:
    body = json.dumps(single(patient_id, content=b"z" * (50 * SMALL_LIMIT))).encode()
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    assert len(packed) < SMALL_LIMIT
    headers = {**tokens.professional(), "Content-Encoding": encoding}
    before = snapshot(services)
    response = small_limit_client.post("/fhir/DocumentReference", content=packed, headers=headers)
    assert_refused(services, before, response, 413, says="once decompressed")


def test_a_compressed_body_within_the_limit_is_accepted(
    small_limit_client, tokens, patient_id
) -> None:
    headers = {**tokens.professional(), "Content-Encoding": "gzip"}
    packed = gzip.compress(json.dumps(single(patient_id, content=b"%PDF-1.7 small")).encode())
    response = small_limit_client.post("/fhir/DocumentReference", content=packed, headers=headers)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("encoding", "body", "status", "says"),
    [
        ("gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xffgarbage", 400, "compressed"),
        ("gzip", gzip.compress(b'{"resourceType": "DocumentReference"}')[:-12], 400, "truncated"),
        ("br", b"whatever", 415, "Content-Encoding"),
    ],
)
def test_a_broken_or_unknown_compression_is_refused(
    client, tokens, services, encoding, body, status, says
) -> None:
    headers = {**tokens.professional(), "Content-Encoding": encoding}
    before = snapshot(services)
    response = client.post("/fhir/DocumentReference", content=body, headers=headers)
    assert_refused(services, before, response, status, says=says)


# -- FHIR and MHD rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "says", "where"),
    [
        (lambda r: r.update(status="draft"), "status must be", "DocumentReference.status"),
        (lambda r: r.update(subject="Patient/1"), "not valid FHIR R4", "DocumentReference.subject"),
        (lambda r: r.update(date="yesterday"), "not valid FHIR R4", "DocumentReference.date"),
        (lambda r: r.update(content="a PDF"), "not valid FHIR R4", "DocumentReference.content"),
        (lambda r: r.update(unknownElement=1), "not valid FHIR R4", None),
    ],
)
def test_a_resource_that_is_not_valid_fhir_is_unprocessable(
    client, tokens, services, patient_id, change, says, where
) -> None:
    resource = single(patient_id)
    change(resource)
    before = snapshot(services)
    response = client.post("/fhir/DocumentReference", json=resource, headers=tokens.professional())
    found = assert_refused(services, before, response, 422, says=says)
    if where is not None:
        assert found["expression"][0].startswith(where), found


@pytest.mark.parametrize(
    ("field", "says"),
    [
        ("masterIdentifier", "masterIdentifier"),
        ("type", "type"),
        ("category", "no class can be derived"),
        ("subject", "subject"),
    ],
)
def test_missing_metadata_is_unprocessable(
    client, tokens, services, patient_id, field, says
) -> None:
    resource = single(patient_id)
    del resource[field]
    if field == "category":
        # A missing category is derived from the type when the ANS table knows it
        # (tests/documents/test_ingest_category.py); here it cannot be.
        resource["type"] = {"coding": [{"system": "http://loinc.org", "code": "1-8"}]}
    before = snapshot(services)
    response = client.post("/fhir/DocumentReference", json=resource, headers=tokens.professional())
    assert_refused(services, before, response, 422, says=says, where=f"DocumentReference.{field}")


@pytest.mark.parametrize(
    ("attachment", "says", "where"),
    [
        ({"contentType": None}, "contentType is required", "contentType"),
        ({"contentType": "pdf"}, "media type", "contentType"),
        ({"size": 3}, "size does not match", "size"),
        ({"hash": base64.b64encode(b"\x00" * 20).decode()}, "does not match", "hash"),
        ({"hash": "c2hvcnQ="}, "SHA-1 digest", "hash"),
        ({"hash": "not base64!"}, "base64Binary", "hash"),
        ({"data": "JVBERi0xLjc"}, "padding", "data"),
        ({"data": "JVB ERi0x"}, "between groups of 4", "data"),
        ({"data": "JVBERi0x*jc="}, "only A-Z", "data"),
        ({"data": None, "url": "Binary/elsewhere"}, "attachment.data", "data"),
    ],
)
def test_attachment_faults_are_unprocessable_in_simplified_publish(
    client, tokens, services, patient_id, attachment, says, where
) -> None:
    resource = single(patient_id)
    target = resource["content"][0]["attachment"]
    for key, value in attachment.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    before = snapshot(services)
    response = client.post("/fhir/DocumentReference", json=resource, headers=tokens.professional())
    assert_refused(
        services,
        before,
        response,
        422,
        says=says,
        where=f"DocumentReference.content[0].attachment.{where}",
    )


def test_invalid_base64_in_a_binary_entry_is_unprocessable(
    client, tokens, services, patient_id
) -> None:
    bundle = bundle_for(patient_id, b"content")
    bundle["entry"][2]["resource"]["data"] = "Y29udGVud A=="
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(
        services, before, response, 422, says="base64Binary", where="Bundle.entry[2].resource.data"
    )


def test_a_hash_mismatch_in_a_transaction_names_the_entry(
    client, tokens, services, patient_id
) -> None:
    bundle = bundle_for(patient_id, b"first", b"second")
    bundle["entry"][3]["resource"]["content"][0]["attachment"]["hash"] = base64.b64encode(
        b"\x01" * 20
    ).decode()
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(
        services,
        before,
        response,
        422,
        says="does not match",
        where="Bundle.entry[3].resource.content[0].attachment.hash",
    )


def test_an_overlong_master_identifier_is_unprocessable_not_a_database_error(
    client, tokens, services, patient_id
) -> None:
    resource = single(patient_id, master=f"urn:uuid:{uuid.uuid4()}" + "0" * 600)
    before = snapshot(services)
    response = client.post("/fhir/DocumentReference", json=resource, headers=tokens.professional())
    assert_refused(services, before, response, 422, says="Too long")


# -- transaction structure ----------------------------------------------------------------


def test_duplicate_full_urls_are_unprocessable(client, tokens, services, patient_id) -> None:
    bundle = bundle_for(patient_id, b"one", b"two")
    bundle["entry"][3]["fullUrl"] = bundle["entry"][1]["fullUrl"]
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(
        services,
        before,
        response,
        422,
        says="fullUrl must be unique",
        where="Bundle.entry[3].fullUrl",
    )


def test_a_binary_no_document_uses_is_unprocessable(client, tokens, services, patient_id) -> None:
    bundle = bundle_for(patient_id, b"used")
    bundle["entry"].append(
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {"resourceType": "Binary", "contentType": "text/plain", "data": "eA=="},
            "request": {"method": "POST", "url": "Binary"},
        }
    )
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(
        services, before, response, 422, says="not the content of any", where="Bundle.entry[3]"
    )


def test_a_binary_shared_by_two_documents_is_unprocessable(
    client, tokens, services, patient_id
) -> None:
    bundle = bundle_for(patient_id, b"same", b"same")
    attachment = bundle["entry"][3]["resource"]["content"][0]["attachment"]
    attachment["url"] = bundle["entry"][2]["fullUrl"]
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(services, before, response, 422, says="one DocumentReference")


def test_an_attachment_url_to_no_binary_of_the_transaction_is_unprocessable(
    client, tokens, services, patient_id
) -> None:
    bundle = bundle_for(patient_id, b"x")
    bundle["entry"][1]["resource"]["content"][0]["attachment"]["url"] = "Binary/on-some-server"
    del bundle["entry"][2]
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(
        services,
        before,
        response,
        422,
        says="Binary of this transaction",
        where="Bundle.entry[1].resource.content[0].attachment.url",
    )


@pytest.mark.parametrize(
    ("change", "says", "where"),
    [
        (lambda b: b.update(type="batch"), "type transaction", "Bundle.type"),
        (lambda b: b.update(entry=[]), "empty", "Bundle.entry"),
        (lambda b: b["entry"].pop(0), "exactly one SubmissionSet", "Bundle.entry"),
        (
            lambda b: b["entry"].append(copy_entry(b, 0)),
            "exactly one SubmissionSet",
            "Bundle.entry",
        ),
        (lambda b: del_entries(b, 1, 2), "no DocumentReference", "Bundle.entry"),
        (lambda b: b["entry"][1].pop("request"), "request.method", "Bundle.entry[1].request"),
        (
            lambda b: b["entry"].append({"request": {"method": "DELETE", "url": "Patient/1"}}),
            "MHD Provide Document Bundle",
            "Bundle.entry[3]",
        ),
        (
            lambda b: b["entry"][1]["request"].update(method="PUT", url="DocumentReference/1"),
            "MHD Provide Document Bundle",
            "Bundle.entry[1]",
        ),
        (
            lambda b: b["entry"][0]["resource"]["code"]["coding"][0].update(code="other"),
            "SubmissionSet",
            "Bundle.entry[0].resource.code",
        ),
        (lambda b: b["entry"][2].pop("fullUrl"), "needs a fullUrl", "Bundle.entry[2].fullUrl"),
    ],
)
def test_a_transaction_that_is_not_a_provide_document_bundle_is_unprocessable(
    client, tokens, services, patient_id, change, says, where
) -> None:
    bundle = bundle_for(patient_id, b"x")
    change(bundle)
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(services, before, response, 422, says=says, where=where)


def copy_entry(bundle: dict[str, Any], index: int) -> dict[str, Any]:
    entry = json.loads(json.dumps(bundle["entry"][index]))
    entry["fullUrl"] = f"urn:uuid:{uuid.uuid4()}"
    return entry


def del_entries(bundle: dict[str, Any], *indices: int) -> None:
    for index in sorted(indices, reverse=True):
        del bundle["entry"][index]
    bundle["entry"][0]["resource"]["entry"] = []


def test_a_failure_after_documents_were_written_leaves_no_trace_but_its_audit_record(
    client, tokens, services, patient_id
) -> None:
    """The PATCH comes last and names a document that does not exist: the documents,
    binaries and blobs the transaction had already written are all rolled back. The one
    entry left is the refusal, as for a document the sender may not see (item 6 of
    docs/threat-model.md: what does not exist is refused as what may not be seen is)."""
    bundle = bundle_for(patient_id, b"one", b"two")
    bundle["entry"].append(
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "operation",
                        "part": [
                            {"name": "type", "valueCode": "replace"},
                            {"name": "path", "valueString": "DocumentReference.status"},
                            {"name": "value", "valueCode": "superseded"},
                        ],
                    }
                ],
            },
            "request": {"method": "PATCH", "url": f"DocumentReference/{uuid.uuid4()}"},
        }
    )
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(services, before, response, 404, says="not found", outcome="denied")


def test_a_successful_transaction_answers_every_entry_in_order(client, tokens, patient_id) -> None:
    bundle = bundle_for(patient_id, b"one", b"two")
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    entries = response_entries(response)
    kinds = [entry["location"].split("/")[0] for entry in entries]
    assert kinds == [entry["resource"]["resourceType"] for entry in bundle["entry"]]


@pytest.mark.parametrize(
    "target",
    [
        "http://example.org/fhir/DocumentReference/abc",
        "urn:uuid:5b8d3e35-1f4e-4c1e-9a55-0d3c1a2b3c4d",
        "Binary/abc",
    ],
)
def test_replacing_what_is_not_a_document_of_this_server_is_unprocessable(
    client, tokens, services, patient_id, target
) -> None:
    resource = single(patient_id)
    resource["relatesTo"] = [{"code": "replaces", "target": {"reference": target}}]
    before = snapshot(services)
    response = client.post("/fhir/DocumentReference", json=resource, headers=tokens.professional())
    assert_refused(
        services, before, response, 422, says="on this server", where="DocumentReference.relatesTo"
    )


def test_replacing_by_this_servers_absolute_url_supersedes_the_document(
    client, tokens, patient_id
) -> None:
    old = client.post(
        "/fhir/DocumentReference", json=single(patient_id), headers=tokens.professional()
    ).json()
    resource = single(patient_id, content=b"%PDF-1.7 corrected")
    resource["relatesTo"] = [
        {
            "code": "replaces",
            "target": {"reference": f"http://testserver/fhir/DocumentReference/{old['id']}"},
        }
    ]
    response = client.post("/fhir/DocumentReference", json=resource, headers=tokens.professional())
    assert response.status_code == 201, response.text
    assert response.json()["relatesTo"][0]["target"] == {
        "reference": f"DocumentReference/{old['id']}"
    }
