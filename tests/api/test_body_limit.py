"""Every route's body is bounded before anything parses it: FHIR routes by
VAULT_MAX_BODY_BYTES, every other route (JSON APIs, /oauth/token) by the smaller
VAULT_MAX_API_BODY_BYTES; a declared length past the limit is refused unread, a chunked
body is cut off at the first chunk past it. 413: an OperationOutcome on /fhir, a JSON
problem elsewhere."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.access.policy_support import policy_url
from tests.factories import create_patient
from vault.api.app import create_app

FHIR_LIMIT = 64 * 1024
API_LIMIT = 4 * 1024
CHUNK = 1024


@pytest.fixture
def small_app(services, settings):
    bounded = settings.model_copy(
        update={"max_body_bytes": FHIR_LIMIT, "max_api_body_bytes": API_LIMIT}
    )
    return create_app(bounded, services)


@pytest.fixture
def small_client(small_app):
    with TestClient(small_app, raise_server_exceptions=False) as test_client:
        yield test_client


def _drive(app, method: str, path: str, headers: dict[str, str], total: int, declared=None):
    """Send ``total`` bytes in chunks straight into the ASGI app, as a server would, and
    count how many the app pulled before it answered."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= total:
            await asyncio.sleep(3600)  # a client that is still sending
        pulled += CHUNK
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": pulled < total}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw_headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    if declared is not None:
        raw_headers.append((b"content-length", str(declared).encode()))
    else:
        raw_headers.append((b"transfer-encoding", b"chunked"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *raw_headers],
        "state": {},
    }

    async def run() -> None:
        await asyncio.wait_for(app(scope, receive, send), timeout=60)

    asyncio.run(run())
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    content_type = dict(start["headers"]).get(b"content-type", b"").decode()
    return start["status"], content_type, body, pulled


def test_a_chunked_body_to_a_json_api_is_cut_off_at_its_limit(small_client, small_app, tokens):
    patient_id, patient_ins = create_patient(small_client, tokens)
    status, content_type, body, pulled = _drive(
        small_app,
        "POST",
        policy_url(patient_id, "/care-team"),
        {**tokens.patient(patient_ins), "Content-Type": "application/json"},
        total=2 * 1024 * 1024,
    )

    assert status == 413
    assert content_type.startswith("application/problem+json")
    problem = json.loads(body)
    assert problem["status"] == 413
    assert str(API_LIMIT) in problem["detail"]
    assert pulled <= API_LIMIT + CHUNK


def test_a_chunked_body_to_fhir_is_cut_off_at_its_limit_with_an_outcome(small_app, tokens):
    status, content_type, body, pulled = _drive(
        small_app,
        "POST",
        "/fhir/DocumentReference",
        {**tokens.professional(), "Content-Type": "application/fhir+json"},
        total=2 * 1024 * 1024,
    )

    assert status == 413
    assert content_type.startswith("application/fhir+json")
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "too-costly"
    assert pulled <= FHIR_LIMIT + CHUNK


@pytest.mark.parametrize(
    "path", ["/oauth/token", "/api/patients/me/policy/care-team", "/fhir/DocumentReference"]
)
def test_a_declared_length_past_the_limit_is_refused_before_a_byte_is_read(small_app, tokens, path):
    status, _, _, pulled = _drive(
        small_app, "POST", path, tokens.professional(), total=CHUNK, declared=10 * 1024 * 1024
    )

    assert status == 413
    assert pulled == 0


def test_bodies_within_the_limits_pass(small_client, tokens):
    patient_id, patient_ins = create_patient(small_client, tokens)
    response = small_client.post(
        policy_url(patient_id, "/care-team"),
        json={"professional": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810003456789"}},
        headers=tokens.patient(patient_ins),
    )
    assert response.status_code != 413, response.text
    assert response.status_code < 500, response.text


def test_the_api_limit_is_smaller_than_the_fhir_limit(small_client, tokens):
    """A body the FHIR routes would take is too large for a JSON API."""
    patient_id, patient_ins = create_patient(small_client, tokens)
    padding = "x" * (API_LIMIT + 1)
    response = small_client.post(
        policy_url(patient_id, "/care-team"),
        content=json.dumps({"professional": {"value": padding}}),
        headers={**tokens.patient(patient_ins), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
