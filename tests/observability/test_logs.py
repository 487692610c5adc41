"""No INS, no document content and no token in any log line, even on errors; and every
request's lines carry the request id the client gets back."""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid

import pytest
from sqlalchemy.exc import DBAPIError

from tests.factories import DOCTOR, document_reference, ins, patient_resource, provide_bundle
from vault.observability.logs import configure_logging, describe_exception, redact

FAMILY = "Zyxlogmarker"
CONTENT = f"MARKER-LOG-CONTENT-{uuid.uuid4()}".encode()


@pytest.fixture
def captured():
    """Everything every logger writes, at DEBUG, as production would format it."""
    stream = io.StringIO()
    configure_logging(json_output=True, level="DEBUG", stream=stream)
    yield stream
    configure_logging(json_output=False, level="INFO")


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_no_ins_content_or_token_reaches_a_log_line_even_on_errors(client, tokens, captured, app):
    ins_value = ins(71)
    patient_headers = tokens.patient(ins_value)
    professional = tokens.professional()
    secrets = [
        ins_value,
        FAMILY,
        CONTENT.decode(),
        base64.b64encode(CONTENT).decode(),
        patient_headers["Authorization"].removeprefix("Bearer "),
        professional["Authorization"].removeprefix("Bearer "),
    ]

    def fail_with_health_data() -> None:
        raise RuntimeError(f"bug while handling {ins_value} {FAMILY} {CONTENT!r}")

    def fail_in_the_database() -> None:
        raise DBAPIError(
            "INSERT INTO patients VALUES (%(ins)s)",
            {"ins": ins_value, "content": CONTENT},
            ValueError(f"constraint on {ins_value}"),
        )

    app.add_api_route("/fhir/$test-bug", fail_with_health_data)
    app.add_api_route("/fhir/$test-database", fail_in_the_database)

    created = client.post(
        "/fhir/Patient",
        json=patient_resource(ins_value, family=FAMILY),
        headers=patient_headers,
    )
    assert created.status_code == 201, created.text
    patient_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]
    subject = {"reference": f"Patient/{patient_id}"}
    published = client.post(
        "/fhir/DocumentReference", json=document_reference(subject, CONTENT), headers=professional
    )
    assert published.status_code == 201, published.text
    binary_url = published.json()["content"][0]["attachment"]["url"]
    outcomes = [
        client.get(f"/fhir/{binary_url}", headers=patient_headers),
        client.get(
            "/fhir/DocumentReference",
            params={"patient.identifier": f"urn:oid:1.2.250.1.213.1.4.8|{ins_value}"},
            headers=patient_headers,
        ),
        client.post(
            "/fhir",
            json=provide_bundle(subject, [(CONTENT, "text/plain")]),
            headers=tokens.software(on_behalf_of=DOCTOR),
        ),
        # Refusals and failures, each carrying health data somewhere in the request.
        client.get(f"/fhir/{binary_url}", headers=tokens.patient(ins(72))),
        client.post(
            "/fhir/DocumentReference",
            content=b'{"resourceType": "DocumentReference", "subject": "'
            + CONTENT
            + ins_value.encode(),
            headers=professional,
        ),
        client.post(
            "/fhir/DocumentReference",
            json={**document_reference(subject, CONTENT), "status": f"bad-{ins_value}"},
            headers=professional,
        ),
        client.get(
            "/fhir/DocumentReference",
            params={"patient.identifier": f"urn:oid:1.2.250.1.213.1.4.8|{ins_value}"},
            headers={"Authorization": f"Bearer {ins_value}.{FAMILY}"},
        ),
        client.get(f"/fhir/Patient/{ins_value}", headers=patient_headers),
        client.get(f"/no/such/{ins_value}", headers=patient_headers),
        client.get("/fhir/$test-bug", headers=professional),
        client.get("/fhir/$test-database", headers=professional),
    ]
    assert outcomes[0].content == CONTENT
    assert [response.status_code for response in outcomes] == [
        200,
        200,
        200,
        404,
        400,
        422,
        401,
        404,
        404,
        500,
        500,
    ]

    written = captured.getvalue()
    for secret in secrets:
        assert secret not in written
    lines = _lines(captured)
    requests = [line for line in lines if line["event"] == "request"]
    assert len(requests) == len(outcomes) + 2
    assert all(line["request_id"] for line in requests)
    failures = [line for line in lines if line.get("level") == "error"]
    assert any("RuntimeError" in json.dumps(line) for line in failures)
    answered = {response.headers["X-Request-ID"] for response in outcomes}
    assert answered <= {line["request_id"] for line in requests}


def test_a_well_formed_request_id_is_kept_and_anything_else_replaced(client, captured):
    kept = client.get("/healthz", headers={"X-Request-ID": "proxy-7f3a9c2e1b"})
    replaced = client.get("/healthz", headers={"X-Request-ID": "x\n{injected}"})
    assert kept.headers["X-Request-ID"] == "proxy-7f3a9c2e1b"
    assert replaced.headers["X-Request-ID"] != "x\n{injected}"
    assert len(replaced.headers["X-Request-ID"]) == 32
    logged = {line["request_id"] for line in _lines(captured) if line["event"] == "request"}
    assert {"proxy-7f3a9c2e1b", replaced.headers["X-Request-ID"]} <= logged


def test_a_failing_request_gets_its_request_id_back(client, app, captured):
    def broken() -> None:
        raise ValueError("nobody should read this")

    app.add_api_route("/fhir/$test-broken", broken)
    response = client.get("/fhir/$test-broken", headers={"X-Request-ID": "incident-0000001"})
    assert response.status_code == 500
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.headers["X-Request-ID"] == "incident-0000001"
    assert "nobody should read this" not in captured.getvalue()


def test_exceptions_from_any_logger_are_written_without_their_message(captured):
    ins_value = ins(73)
    try:
        raise KeyError(f"{ins_value} {CONTENT!r}")
    except KeyError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    try:
        raise RuntimeError("outer") from ValueError(ins_value)
    except RuntimeError as error:
        described = describe_exception(error)
    written = captured.getvalue()
    assert "KeyError" in written
    assert ins_value not in written
    assert CONTENT.decode() not in written
    assert "RuntimeError" in described
    assert "ValueError" in described
    assert ins_value not in described


def test_the_last_line_of_defence_masks_tokens_and_nirs():
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxODUwMTc1MDAwMDAxMjMifQ.c2lnbmF0dXJl"
    line = f"user 185017500000123 sent Bearer abc.def and {token}; corsica 2850A2B00000041"
    masked = redact(line.replace("2850A2B", "28502B0"))
    assert "185017500000123" not in masked
    assert "abc.def" not in masked
    assert token not in masked
    assert "[nir]" in masked
    assert "[token]" in masked
    # Timestamps and ordinary numbers stay readable.
    assert redact("took 1732441234567 ms, status 201") == "took 1732441234567 ms, status 201"
