"""Security probes over HTTP: SQL injection in every search parameter, oversized and
malformed tokens on every kind of protected route, and enumeration of other patients'
resources, which must look exactly like probing ids that do not exist.

Path traversal against the file blob store is in tests/storage/test_blobs.py; token
parsing in depth in tests/access/test_tokens.py."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.factories import (
    DOCTOR,
    INS_SYSTEM,
    OTHER_DOCTOR,
    create_patient,
    ins,
    provide_bundle,
    publish,
)
from tests.hardening.support import assert_outcome, row_counts
from vault.api.fhir.audit_events import SEARCH_PARAMETERS as AUDIT_EVENT_PARAMETERS
from vault.api.fhir.consent import SEARCH_PARAMETERS as CONSENT_PARAMETERS
from vault.api.fhir.documents import SEARCH_PARAMETERS as DOCUMENT_PARAMETERS


@dataclass(frozen=True)
class World:
    """Patient A and patient B, each with documents a doctor published."""

    a_id: str
    a_ins: str
    a_documents: frozenset[str]
    b_id: str
    b_ins: str
    b_document: str
    b_binary: str
    b_list: str


@pytest.fixture
def world(client, tokens) -> World:
    a_id, a_ins = create_patient(client, tokens, seed=1)
    b_id, b_ins = create_patient(client, tokens, seed=2)
    doctor = tokens.professional(DOCTOR)
    a_documents = frozenset(
        publish(client, doctor, a_id, f"%PDF-1.7 a{n}".encode(), labels=("N",))["id"]
        for n in range(3)
    )
    b_stored = publish(client, doctor, b_id, b"%PDF-1.7 b", labels=("R",))
    provided = client.post(
        "/fhir",
        json=provide_bundle({"reference": f"Patient/{b_id}"}, [(b"%PDF b2", "application/pdf")]),
        headers=doctor,
    )
    assert provided.status_code == 200, provided.text
    return World(
        a_id,
        a_ins,
        a_documents,
        b_id,
        b_ins,
        b_stored["id"],
        b_stored["content"][0]["attachment"]["url"].rsplit("/", 1)[1],
        provided.json()["entry"][0]["response"]["location"].split("/")[1],
    )


# -- SQL injection -------------------------------------------------------------------------

INJECTIONS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "x') OR ('1'='1",
    "1; DROP TABLE documents; --",
    "' UNION SELECT id, patient_id FROM documents --",
    "%' OR master_identifier LIKE '%",
    "%",
    "_",
    "\\",
    "*",
    "R' OR security_labels LIKE '%",
    "http://loinc.org|' OR '1'='1",
    "|%",
    "eq2026' OR '1'='1",
    "ge1900-01-01' OR '1'='1",
    "'; SELECT pg_sleep(10); --",
    "\x00' OR '1'='1",
    "ZXZpbA' OR '1'='1",
]


def searches_of(world: World) -> list[tuple[str, str, str]]:
    """(resource, parameter, base query) for every search parameter of every search."""
    cases = []
    for name in sorted(DOCUMENT_PARAMETERS):
        base = (
            "" if name in ("patient", "subject", "patient.identifier") else f"patient={world.a_id}"
        )
        cases.append(("DocumentReference", name, base))
    for name in sorted(AUDIT_EVENT_PARAMETERS):
        cases.append(("AuditEvent", name, "" if name == "patient" else f"patient={world.a_id}"))
    for name in sorted(CONSENT_PARAMETERS):
        cases.append(("Consent", name, "" if name == "patient" else f"patient={world.a_id}"))
    return cases


def test_no_search_parameter_lets_sql_through(client, tokens, services, world) -> None:
    """Each payload in each parameter: a 4xx, or a 200 holding only what the caller
    (patient A) may see -- never B's documents, never a 5xx, and the tables intact."""
    before = row_counts(services.engine)
    headers = tokens.patient(world.a_ins)
    b_resources = {world.b_document, world.b_binary, world.b_list, world.b_id}
    for resource, name, base in searches_of(world):
        for payload in INJECTIONS:
            params = dict(item.split("=", 1) for item in base.split("&") if item)
            params[name] = payload
            response = client.get(f"/fhir/{resource}", params=params, headers=headers)
            where = f"{resource}?{name}={payload!r}"
            assert response.status_code < 500, (where, response.text)
            if response.status_code >= 400:
                assert_outcome(response)
                continue
            body = response.json()
            assert body["resourceType"] == "Bundle", where
            found = {entry["resource"].get("id") for entry in body.get("entry", [])}
            assert not found & b_resources, where
            assert world.b_ins not in response.text, where
            if resource == "DocumentReference":
                assert found <= world.a_documents, where
                if name not in ("_format", "_pretty", "_total"):
                    # A filter that is not a value of any document matches none.
                    assert not found, where
    assert row_counts(services.engine) == before


def test_a_quote_in_a_search_value_is_matched_literally(client, tokens, world) -> None:
    """The other side of the coin: the same characters are data, not syntax."""
    headers = tokens.patient(world.a_ins)
    response = client.get(
        "/fhir/DocumentReference",
        params={"patient": world.a_id, "security-label": "N,' OR '1'='1"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert {entry["resource"]["id"] for entry in response.json()["entry"]} == world.a_documents


# -- tokens ----------------------------------------------------------------------------------


def _segment(document: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


BAD_TOKENS = {
    "oversized-64k": "a" * 65536,
    "oversized-jwt": f"{_segment({'alg': 'ES256'})}.{_segment({'pad': 'x' * 40000})}.c2ln",
    "empty": "",
    "spaces": "   ",
    "three-dots": "...",
    "alg-none": f"{_segment({'alg': 'none'})}.{_segment({'sub': 'x', 'role': 'operator'})}.",
    "header-not-json": "bm90IGpzb24.e30.c2ln",
    "huge-kid": f"{_segment({'alg': 'ES256', 'kid': 'k' * 10000})}.e30.c2ln",
    "nested-header": f"{_segment({'alg': 'ES256', 'jwk': {'a': [[[[[[[[[[1]]]]]]]]]]}})}.e30.c2ln",
    "latin1-bytes": "é" * 20,
}
PROTECTED = [
    ("GET", "/fhir/DocumentReference?patient=x"),
    ("POST", "/fhir"),
    ("POST", "/fhir/DocumentReference"),
    ("POST", "/fhir/Patient"),
    ("GET", "/fhir/Binary/x"),
    ("GET", "/fhir/Patient/x"),
    ("GET", "/fhir/AuditEvent?patient=x"),
    ("GET", "/api/patients/me/policy"),
    ("GET", "/audit/checkpoints"),
]


@pytest.mark.parametrize("token", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_bad_tokens_are_refused_on_every_kind_of_route_and_store_nothing(
    client, services, token
) -> None:
    before = row_counts(services.engine)
    body = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": []})
    for method, path in PROTECTED:
        headers = {
            # As bytes: a header is latin-1 on the wire, whatever the token holds.
            "Authorization": f"Bearer {token}".encode("latin-1"),
            "Content-Type": b"application/fhir+json",
        }
        response = client.request(
            method, path, headers=headers, content=body if method == "POST" else None
        )
        # A run of bad tokens from one address is throttled (429); both are refusals.
        assert response.status_code in (401, 429), (path, response.status_code)
        issue = assert_outcome(response)
        assert issue["code"] in ("login", "throttled")
        if response.status_code == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert token[:40].strip() not in response.text or not token.strip()
    assert row_counts(services.engine) == before


def test_a_token_in_the_query_string_is_not_a_credential(client, tokens, world) -> None:
    token = tokens.patient(world.a_ins)["Authorization"].split()[1]
    response = client.get(f"/fhir/DocumentReference?patient={world.a_id}&access_token={token}")
    assert_outcome(response, 401)


# -- enumeration --------------------------------------------------------------------------


def probes(world: World, real: bool) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path, JSON body): B's real ids, or ids nobody has."""
    document = world.b_document if real else str(uuid.uuid4())
    binary = world.b_binary if real else str(uuid.uuid4())
    listed = world.b_list if real else str(uuid.uuid4())
    patient = world.b_id if real else str(uuid.uuid4())
    someone = world.b_ins if real else ins(4242)
    patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "DocumentReference.status"},
                    {"name": "value", "valueCode": "entered-in-error"},
                ],
            }
        ],
    }
    return [
        ("GET", f"/fhir/DocumentReference/{document}", None),
        ("GET", f"/fhir/DocumentReference/{document}/_history", None),
        ("GET", f"/fhir/DocumentReference/{document}/_history/1", None),
        ("PATCH", f"/fhir/DocumentReference/{document}", patch),
        ("DELETE", f"/fhir/DocumentReference/{document}", None),
        ("GET", f"/fhir/Binary/{binary}", None),
        ("GET", f"/fhir/List/{listed}", None),
        ("GET", f"/fhir/Patient/{patient}", None),
        ("GET", f"/fhir/DocumentReference?patient={patient}", None),
        ("GET", f"/fhir/DocumentReference?patient.identifier={INS_SYSTEM}|{someone}", None),
        ("GET", f"/fhir/AuditEvent?patient={patient}", None),
        ("GET", f"/fhir/Consent?patient={patient}", None),
        ("GET", f"/api/patients/{patient}/policy", None),
        ("GET", f"/api/patients/{patient}/policy/history", None),
    ]


def shape(response: Any, ids: list[str]) -> dict[str, Any]:
    """What a prober can compare: status, headers present, and the body with every id it
    sent replaced by a placeholder (and what varies per request removed)."""
    text = response.text
    for value in ids:
        text = text.replace(value, "<id>")
    body: Any = json.loads(text) if text else None
    if isinstance(body, dict):
        body.pop("id", None)
        body.pop("meta", None)
        body.pop("timestamp", None)
    ignored = {"date", "x-request-id", "content-length"}
    return {
        "status": response.status_code,
        "headers": sorted(name for name in response.headers if name.lower() not in ignored),
        "body": body,
    }


@pytest.mark.parametrize("prober", ["other-patient", "unrelated-professional", "caregiver"])
def test_other_patients_resources_are_indistinguishable_from_absent_ones(
    client, tokens, services, world, prober
) -> None:
    headers = {
        "other-patient": tokens.patient(world.a_ins),
        "unrelated-professional": tokens.professional(OTHER_DOCTOR),
        "caregiver": tokens.caregiver(),
    }[prober]
    real, absent = probes(world, real=True), probes(world, real=False)
    for (method, path, body), (_, fake_path, fake_body) in zip(real, absent, strict=True):
        answers = []
        for target, content in ((path, body), (fake_path, fake_body)):
            response = client.request(
                method,
                target,
                headers=headers,
                content=json.dumps(content) if content is not None else None,
            )
            assert response.status_code < 500, (target, response.text)
            ids = [
                part
                for part in target.replace("?", "/").replace("=", "/").split("/")
                if len(part) > 8
            ]
            answers.append(shape(response, [*ids, world.b_ins, ins(4242)]))
        assert answers[0] == answers[1], (prober, method, path, answers)
    # Nothing the probes tried changed B's record.
    owner = tokens.patient(world.b_ins)
    assert (
        client.get(f"/fhir/DocumentReference/{world.b_document}", headers=owner).json()["status"]
        == "current"
    )
    assert row_counts(services.engine)["documents"] == 5
