"""No route reaches a patient's record except through the decision point.

Every route that touches documents, binaries, patients or their policy is called by
principals the decision function refuses (a professional the patient blocked, another
patient): each answers as if nothing were there, leaves a 'denied' audit entry, and
changes nothing. The walk is over the app's own routes, so a new route must be listed here
(or said to touch no record) before the suite passes. A static check completes it: only the
domains that go through the decision point handle the document models.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from tests.access.policy_support import (
    add_professional,
    audit_entries,
    grant,
    policy_url,
    professional,
    publish_document,
)
from tests.factories import (
    DOCTOR,
    OTHER_DOCTOR,
    Tokens,
    create_patient,
    document_reference,
    ins,
    patient_resource,
    provide_bundle,
)

VAULT = Path(__file__).resolve().parents[2] / "vault"


@dataclass
class Record:
    patient_id: str
    patient_ins: str
    document_id: str
    binary_id: str
    list_id: str
    delegation_id: str
    representation_id: str
    invitation_id: str


Call = Callable[[Record], tuple[str, dict[str, Any] | list[Any] | None, str | None]]
FHIR = "application/fhir+json"
JSON = "application/json"


def _url(template: str) -> Callable[[Record], str]:
    def fill(record: Record) -> str:
        return (
            template.replace("{patient_id}", record.patient_id)
            .replace("{document_id}", record.document_id)
            .replace("{binary_id}", record.binary_id)
            .replace("{list_id}", record.list_id)
            .replace("{delegation_id}", record.delegation_id)
            .replace("{entry_id}", record.representation_id)
            .replace("{invitation_id}", record.invitation_id)
            .replace("{idnps}", DOCTOR)
            .replace("{version}", "1")
        )

    return fill


def _plain(template: str, body: Any = None, media: str | None = None) -> Call:
    fill = _url(template)
    return lambda record: (fill(record), body, media)


# Every route that reaches a patient's record, with a request that would succeed for
# someone the policy allows.
RECORD_ROUTES: dict[tuple[str, str], Call] = {
    ("POST", "/fhir"): lambda r: (
        "/fhir",
        provide_bundle({"reference": f"Patient/{r.patient_id}"}, [(b"x", "text/plain")]),
        FHIR,
    ),
    ("POST", "/fhir/DocumentReference"): lambda r: (
        "/fhir/DocumentReference",
        document_reference({"reference": f"Patient/{r.patient_id}"}),
        FHIR,
    ),
    ("GET", "/fhir/DocumentReference"): lambda r: (
        f"/fhir/DocumentReference?patient={r.patient_id}",
        None,
        None,
    ),
    ("GET", "/fhir/DocumentReference/{document_id}"): _plain(
        "/fhir/DocumentReference/{document_id}"
    ),
    ("GET", "/fhir/DocumentReference/{document_id}/_history"): _plain(
        "/fhir/DocumentReference/{document_id}/_history"
    ),
    ("GET", "/fhir/DocumentReference/{document_id}/_history/{version}"): _plain(
        "/fhir/DocumentReference/{document_id}/_history/{version}"
    ),
    ("PATCH", "/fhir/DocumentReference/{document_id}"): _plain(
        "/fhir/DocumentReference/{document_id}",
        [{"op": "replace", "path": "/status", "value": "entered-in-error"}],
        "application/json-patch+json",
    ),
    ("DELETE", "/fhir/DocumentReference/{document_id}"): _plain(
        "/fhir/DocumentReference/{document_id}"
    ),
    ("GET", "/fhir/Binary/{binary_id}"): _plain("/fhir/Binary/{binary_id}"),
    ("POST", "/fhir/Patient"): lambda r: ("/fhir/Patient", patient_resource(r.patient_ins), FHIR),
    ("GET", "/fhir/Patient/{patient_id}"): _plain("/fhir/Patient/{patient_id}"),
    ("GET", "/fhir/List/{list_id}"): _plain("/fhir/List/{list_id}"),
    ("GET", "/fhir/AuditEvent"): lambda r: (f"/fhir/AuditEvent?patient={r.patient_id}", None, None),
    ("GET", "/fhir/Consent"): lambda r: (f"/fhir/Consent?patient={r.patient_id}", None, None),
    ("GET", "/api/patients/{patient_id}/policy"): _plain("/api/patients/{patient_id}/policy"),
    ("GET", "/api/patients/{patient_id}/policy/history"): _plain(
        "/api/patients/{patient_id}/policy/history"
    ),
    ("PUT", "/api/patients/{patient_id}/policy/treating-doctor"): _plain(
        "/api/patients/{patient_id}/policy/treating-doctor",
        {"professional": professional(DOCTOR)},
        JSON,
    ),
    ("DELETE", "/api/patients/{patient_id}/policy/treating-doctor"): _plain(
        "/api/patients/{patient_id}/policy/treating-doctor"
    ),
    ("POST", "/api/patients/{patient_id}/policy/care-team"): _plain(
        "/api/patients/{patient_id}/policy/care-team",
        {"professional": professional(DOCTOR)},
        JSON,
    ),
    ("DELETE", "/api/patients/{patient_id}/policy/care-team/{idnps}"): _plain(
        "/api/patients/{patient_id}/policy/care-team/{idnps}"
    ),
    ("POST", "/api/patients/{patient_id}/policy/blocks"): _plain(
        "/api/patients/{patient_id}/policy/blocks",
        {"professional": professional(OTHER_DOCTOR)},
        JSON,
    ),
    ("DELETE", "/api/patients/{patient_id}/policy/blocks/{idnps}"): _plain(
        "/api/patients/{patient_id}/policy/blocks/{idnps}"
    ),
    ("DELETE", "/api/patients/{patient_id}/policy/point-of-care/{idnps}"): _plain(
        "/api/patients/{patient_id}/policy/point-of-care/{idnps}"
    ),
    ("POST", "/api/patients/{patient_id}/policy/masks"): lambda r: (
        policy_url(r.patient_id, "/masks"),
        {"document": r.document_id},
        JSON,
    ),
    ("DELETE", "/api/patients/{patient_id}/policy/masks/{document_id}"): _plain(
        "/api/patients/{patient_id}/policy/masks/{document_id}"
    ),
    ("POST", "/api/patients/{patient_id}/policy/delegations"): _plain(
        "/api/patients/{patient_id}/policy/delegations",
        {
            "caregiver": "accomplice",
            "scope": "read",
            "categories": ["*"],
            "expires": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
        JSON,
    ),
    ("DELETE", "/api/patients/{patient_id}/policy/delegations/{delegation_id}"): _plain(
        "/api/patients/{patient_id}/policy/delegations/{delegation_id}"
    ),
    ("POST", "/api/patients/{patient_id}/policy/representatives"): _plain(
        "/api/patients/{patient_id}/policy/representatives",
        {"representative": {"system": "urn:vault:caregiver", "value": "accomplice"}},
        JSON,
    ),
    ("DELETE", "/api/patients/{patient_id}/policy/representatives/{entry_id}"): _plain(
        "/api/patients/{patient_id}/policy/representatives/{entry_id}"
    ),
    ("PUT", "/api/patients/{patient_id}/policy/emergency-access-refusal"): _plain(
        "/api/patients/{patient_id}/policy/emergency-access-refusal", {"refused": True}, JSON
    ),
    ("POST", "/api/patients/{patient_id}/emergency-access"): _plain(
        "/api/patients/{patient_id}/emergency-access", {"reason": "curiosity"}, JSON
    ),
    ("GET", "/api/patients/{patient_id}/policy/delegations"): _plain(
        "/api/patients/{patient_id}/policy/delegations"
    ),
    ("POST", "/api/patients/{patient_id}/policy/invitations"): _plain(
        "/api/patients/{patient_id}/policy/invitations",
        {
            "mayAdd": True,
            "categories": ["*"],
            "until": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
        JSON,
    ),
    ("DELETE", "/api/patients/{patient_id}/policy/invitations/{invitation_id}"): _plain(
        "/api/patients/{patient_id}/policy/invitations/{invitation_id}"
    ),
    ("POST", "/api/patients/{patient_id}/policy/point-of-care/{idnps}/block"): _plain(
        "/api/patients/{patient_id}/policy/point-of-care/{idnps}/block"
    ),
    ("POST", "/api/patients/{patient_id}/point-of-care-consent"): _plain(
        "/api/patients/{patient_id}/point-of-care-consent",
        {"patientInformed": True, "patientAgreed": True},
        JSON,
    ),
    ("GET", "/api/patients/{patient_id}/notifications"): _plain(
        "/api/patients/{patient_id}/notifications"
    ),
    ("PUT", "/api/patients/{patient_id}/notifications/address"): _plain(
        "/api/patients/{patient_id}/notifications/address", {"address": "spy@example.org"}, JSON
    ),
    ("DELETE", "/api/patients/{patient_id}/notifications/address"): _plain(
        "/api/patients/{patient_id}/notifications/address"
    ),
    ("PUT", "/api/patients/{patient_id}/notifications/events"): _plain(
        "/api/patients/{patient_id}/notifications/events", {"events": []}, JSON
    ),
    ("POST", "/api/patients/{patient_id}/exports"): _plain("/api/patients/{patient_id}/exports"),
    ("GET", "/fhir/Patient/{patient_id}/$everything"): _plain(
        "/fhir/Patient/{patient_id}/$everything"
    ),
    ("GET", "/api/patients/{patient_id}/exports/{export_id}"): _plain(
        "/api/patients/{patient_id}/exports/an-export"
    ),
    ("GET", "/api/patients/{patient_id}/exports/{export_id}/archive"): _plain(
        "/api/patients/{patient_id}/exports/an-export/archive"
    ),
    ("GET", "/api/patients/{patient_id}/closure"): _plain("/api/patients/{patient_id}/closure"),
    ("POST", "/api/patients/{patient_id}/closure"): _plain(
        "/api/patients/{patient_id}/closure", {"deleteNow": True}, JSON
    ),
    ("POST", "/api/patients/{patient_id}/closure/deletion"): _plain(
        "/api/patients/{patient_id}/closure/deletion"
    ),
    ("POST", "/api/patients/{patient_id}/reopening"): _plain(
        "/api/patients/{patient_id}/reopening"
    ),
}

# Routes that touch no patient's record, and why.
OTHER_ROUTES = {
    ("GET", "/api/me/relationships"): "lists only relationships naming the caller",
    ("POST", "/api/invitations/accept"): "names a one-time code, not a record; the code is the "
    "patient's grant, and an unknown one is refused alike",
    ("GET", "/audit/public-key"): "the audit log's public verification material",
    ("GET", "/audit/checkpoints"): "signed tree heads: sizes and hashes only",
    ("GET", "/audit/checkpoints/latest"): "signed tree heads: sizes and hashes only",
    ("GET", "/audit/checkpoints/{tree_size}"): "signed tree heads: sizes and hashes only",
    ("GET", "/audit/proofs/inclusion"): "Merkle proofs: hashes only",
    ("GET", "/audit/proofs/consistency"): "Merkle proofs: hashes only",
    ("POST", "/api/oppositions"): "the caller's own opposition, by the INS of their token; "
    "no record",
    ("GET", "/api/oppositions/me"): "the caller's own opposition, by the INS of their token",
    ("DELETE", "/api/oppositions/me"): "the caller's own opposition, by the INS of their token",
}


def _protected_routes(app) -> set[tuple[str, str]]:
    from vault.api.app import PUBLIC_PATHS  # noqa: PLC0415
    from vault.web.routes import router as space  # noqa: PLC0415

    # The patient's space's pages call the same services (tests/web covers them).
    pages = {route.path for route in space.routes}
    found = set()
    for route in iter_route_contexts(app.routes):
        if route.path in PUBLIC_PATHS or route.path in pages or not route.methods:
            continue
        found.update((method, route.path) for method in route.methods if method != "HEAD")
    return found


def test_every_protected_route_is_classified(app):
    assert _protected_routes(app) == set(RECORD_ROUTES) | set(OTHER_ROUTES)


@pytest.fixture
def record(client, tokens) -> Record:
    """A record with a document, a submission, a delegation and a legal representative;
    its patient has blocked DOCTOR."""
    patient_id, patient_ins = create_patient(client, tokens, seed=61)
    own = tokens.patient(patient_ins)
    author = tokens.professional(OTHER_DOCTOR)
    document_id, binary_id = publish_document(client, author, patient_id)
    bundle = provide_bundle({"reference": f"Patient/{patient_id}"}, [(b"lab", "text/plain")])
    submitted = client.post("/fhir", json=bundle, headers=author)
    assert submitted.status_code == 200, submitted.text
    list_id = next(
        entry["response"]["location"].split("/")[1]
        for entry in submitted.json()["entry"]
        if entry["response"]["location"].startswith("List/")
    )
    delegation = grant(client, own, patient_id, "aidant-1")
    operator = Tokens._headers(tokens.issuer.mint("operator", "ops", scope="system/Consent.u"))
    representation = client.post(
        policy_url(patient_id, "/representatives"),
        json={
            "representative": {"system": "urn:vault:caregiver", "value": "parent-1"},
            "measure": {"type": "tutelle", "reference": "TJ 26/001"},
        },
        headers=operator,
    )
    assert representation.status_code == 201, representation.text
    assert add_professional(client, own, patient_id, "/blocks", DOCTOR).status_code == 201
    invitation = client.post(
        policy_url(patient_id, "/invitations"),
        json={
            "mayAdd": False,
            "categories": ["*"],
            "until": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
        headers=own,
    )
    assert invitation.status_code == 201, invitation.text
    return Record(
        patient_id,
        patient_ins,
        document_id,
        binary_id,
        list_id,
        delegation.json()["id"],
        representation.json()["id"],
        invitation.json()["id"],
    )


def _refused(response) -> bool:
    if response.status_code == 404:
        return True
    # A search answers a record one may not search as a record with nothing visible.
    body = response.json() if response.status_code == 200 else {}
    return body.get("resourceType") == "Bundle" and not body.get("entry")


@pytest.mark.parametrize("who", ["blocked professional", "another patient"])
def test_every_record_route_refuses_whom_the_policy_refuses_and_says_so_in_the_audit(
    client, tokens, services, record, who
):
    headers = (
        tokens.professional(DOCTOR) if who == "blocked professional" else tokens.patient(ins(62))
    )
    if who == "another patient":
        other = client.post("/fhir/Patient", json=patient_resource(ins(62)), headers=headers)
        assert other.status_code == 201
    own = tokens.patient(record.patient_ins)
    policy_before = client.get(policy_url(record.patient_id), headers=own).json()
    answers = {}
    for (method, _), call in RECORD_ROUTES.items():
        url, body, media = call(record)
        before = _denials(services, record.patient_id)
        response = client.request(
            method,
            url,
            json=body,
            headers={**headers, "Content-Type": media or JSON},
        )
        answers[(method, url)] = (
            _refused(response),
            _denials(services, record.patient_id) > before,
        )
    assert {call: answer for call, answer in answers.items() if answer != (True, True)} == {}
    # Nothing changed: not the policy, not the document.
    assert client.get(policy_url(record.patient_id), headers=own).json() == policy_before
    document = client.get(f"/fhir/DocumentReference/{record.document_id}", headers=own)
    assert document.json()["status"] == "current"


def _denials(services, patient_id: str) -> int:
    return sum(1 for entry in audit_entries(services, patient_id) if entry.outcome == "denied")


# -- the static check -------------------------------------------------------------------------

MODELS = frozenset({"Document", "DocumentVersion", "Binary"})
# The domains whose every use of the document models goes through the decision point.
DECIDED = ("documents", "patients", "access", "models", "migrations")
# Elsewhere, each use and why it reaches no content and serves no caller's request for one.
ALLOWED = {
    "audit/repository/__init__.py": "which documents an audit entry names, to hide entries about "
    "documents the reader may not see (through AccessService.check)",
    "submissions/repository.py": "a submission set's members, each then decided by "
    "AccessService before anything is returned",
    "storage/blobs/repository.py": "blob keys still referenced, to delete orphaned ciphertext",
    "backup/repository.py": "ids of crypto-shredded documents, to re-shred restored backups; "
    "copying ciphertext and wrapped keys for a backup",
    "records/repository.py": "the purge destroying the keys of a whole record whose deletion "
    "is due: reads no content, serves no caller",
}


def _model_users() -> dict[str, set[str]]:
    users: dict[str, set[str]] = {}
    for path in VAULT.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vault.models"):
                names = {alias.name for alias in node.names} & MODELS
                if names:
                    users.setdefault(path.relative_to(VAULT).as_posix(), set()).update(names)
    return users


def test_only_the_decided_domains_handle_the_document_models():
    outside = {
        path: names
        for path, names in _model_users().items()
        if path.split("/")[0] not in DECIDED and path not in ALLOWED
    }
    assert outside == {}
    assert not any(path.startswith("api/") for path in _model_users())


def test_the_allowed_exceptions_are_still_needed():
    users = _model_users()
    assert {path for path in ALLOWED if path not in users} == set()
