"""The authorization matrix, generated: every endpoint x every role x every relationship
state, each answered over HTTP exactly as the table below says.

The table is written out by hand from the rules in docs/access.md, not computed from the
decision function. Anything a role is not listed as allowed is expected to be refused
(deny by default): refused as 404, as if the document or record did not exist, or as 403
for a change to a document the caller can already see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.access.policy_support import (
    MASKED,
    VISIBILITY,
    add_professional,
    create_patient_born,
    declare_emergency,
    grant,
    policy_url,
    professional,
    publish_document,
    years_ago,
)
from tests.factories import (
    DOCTOR,
    OTHER_DOCTOR,
    Tokens,
    document_reference,
    ins,
    patient_resource,
    provide_bundle,
)
from vault.access.state import DelegationScope
from vault.identity.principal import Principal, Role
from vault.identity.scopes import parse_scopes
from vault.models.base import utcnow
from vault.policies.management import PolicyService
from vault.services import Services

CAREGIVER = "caregiver-1"
PARENT = "parent-1"

OK, HIDDEN, FORBIDDEN = "ok", "hidden", "forbidden"

STATES = (
    "none",
    "care-team",
    "treating-doctor",
    "blocked",
    "masked",
    "delegated",
    "expired-delegation",
    "revoked",
    "emergency",
    "opted-out",
)
ROLES = (
    "patient",
    "other-patient",
    "representative",
    "doctor",
    "software",
    "caregiver",
    "operator",
)
# In the order they run: reads first, then what changes documents, then the policy.
ENDPOINTS = (
    "read",
    "vread",
    "history",
    "content",
    "search",
    "patient",
    "patch-mask",
    "delete",
    "create",
    "consent",
    "policy",
    "policy-history",
    "audit",
    "block",
    "delegate",
    "point-of-care",
    "emergency",
)
READS = ("read", "vread", "history", "content", "search", "patient")
DOCUMENT_READS = ("read", "vread", "history", "content", "search")

# -- the expected outcomes ---------------------------------------------------------------

PATIENT_SIDE = {
    **dict.fromkeys(ENDPOINTS, OK),
    "delete": FORBIDDEN,  # the professional's document is theirs to withdraw
    "point-of-care": HIDDEN,  # declared by professionals
    "emergency": HIDDEN,
}
NOTHING = dict.fromkeys(ENDPOINTS, HIDDEN)
# A professional with no care relationship: feeds the record, may declare an emergency or
# the patient's consent at the point of care, reads nothing.
STRANGER = {**NOTHING, "create": OK, "point-of-care": OK, "emergency": OK}
CARING = {
    **STRANGER,
    **dict.fromkeys(READS, OK),
    "patch-mask": FORBIDDEN,  # only the patient masks
    "delete": FORBIDDEN,
}
# The care team member, the document masked: the patient's record, without the document.
CARING_MASKED = {**STRANGER, "patient": OK}
PROFESSIONAL = {
    "none": STRANGER,
    "care-team": CARING,
    "treating-doctor": CARING,
    "blocked": NOTHING,
    "masked": CARING_MASKED,
    "delegated": STRANGER,
    "expired-delegation": STRANGER,
    "revoked": STRANGER,
    "emergency": CARING,
    # Refusing emergency access refuses every access the patient did not grant themselves,
    # point-of-care declarations included (docs/access.md).
    "opted-out": {**STRANGER, "emergency": HIDDEN, "point-of-care": HIDDEN},
}
DELEGATE = {
    **NOTHING,
    **dict.fromkeys(READS, OK),
    "patch-mask": FORBIDDEN,
    "delete": FORBIDDEN,
    "create": OK,
}
CAREGIVER_BY_STATE = {
    **dict.fromkeys(STATES, NOTHING),
    "delegated": DELEGATE,
    "masked": {**NOTHING, "patient": OK, "create": OK},
}
EXPECTED: dict[str, dict[str, dict[str, str]]] = {
    "patient": dict.fromkeys(STATES, PATIENT_SIDE),
    "other-patient": dict.fromkeys(STATES, NOTHING),
    # A parent registered as the minor's legal representative: the patient's side of the
    # record, less withdrawing others' documents.
    "representative": dict.fromkeys(STATES, PATIENT_SIDE),
    "doctor": PROFESSIONAL,
    "software": PROFESSIONAL,
    "caregiver": CAREGIVER_BY_STATE,
    "operator": dict.fromkeys(STATES, NOTHING),
}


def test_the_table_names_every_endpoint_for_every_role_and_state():
    for role in ROLES:
        for state in STATES:
            assert set(EXPECTED[role][state]) == set(ENDPOINTS), (role, state)


# -- the scene -----------------------------------------------------------------------------


@dataclass
class Scene:
    client: TestClient
    services: Services
    tokens: Tokens
    patient_id: str
    patient_ins: str
    document_id: str
    binary_id: str
    masked: bool
    scratch: list[str]
    counter: int = 0

    def headers(self, role: str) -> dict[str, str]:
        issuer = self.tokens.issuer
        if role == "patient":
            return self.tokens.patient(self.patient_ins)
        if role == "other-patient":
            return self.tokens.patient(ins(902))
        if role == "representative":
            return self.tokens.caregiver(PARENT)
        if role == "doctor":
            return self.tokens.professional(DOCTOR)
        if role == "software":
            token = issuer.mint(
                "software", "lab-system", on_behalf_of=DOCTOR, extra={"profession": "10"}
            )
            return Tokens._headers(token)
        if role == "caregiver":
            return self.tokens.caregiver(CAREGIVER)
        # An operator whose token carries every scope: the rules, not the scopes, refuse.
        return Tokens._headers(issuer.mint("operator", "ops-1", scope="system/*.cruds"))

    def scratch_document(self) -> str:
        """A document of the professional's for one change, masked like the target."""
        return self.scratch.pop()

    def unique(self) -> str:
        self.counter += 1
        return f"8100000{self.counter:05d}"


def _build(client: TestClient, services: Services, tokens: Tokens, state: str) -> Scene:
    # A minor, so that a parent is their legal representative.
    patient_id, patient_ins = create_patient_born(client, tokens, 901, years_ago(12))
    # The other patient has a record of their own.
    other = ins(902)
    response = client.post(
        "/fhir/Patient", json=patient_resource(other), headers=tokens.patient(other)
    )
    assert response.status_code == 201, response.text
    own = tokens.patient(patient_ins)
    masked = state == "masked"
    document_id, binary_id = publish_document(
        client,
        tokens.professional(OTHER_DOCTOR),
        patient_id,
        labels=(MASKED,) if masked else (),
    )
    operator = Tokens._headers(tokens.issuer.mint("operator", "ops-1", scope="system/Consent.u"))
    response = client.post(
        policy_url(patient_id, "/representatives"),
        json={"representative": {"system": "urn:vault:caregiver", "value": PARENT}},
        headers=operator,
    )
    assert response.status_code == 201, response.text
    SETUP[state](client, services, tokens, own, patient_id, patient_ins)
    scratch = _scratch_documents(client, tokens, patient_id, 2 * len(ROLES), masked=masked)
    return Scene(
        client, services, tokens, patient_id, patient_ins, document_id, binary_id, masked, scratch
    )


def _scratch_documents(
    client: TestClient, tokens: Tokens, patient_id: str, count: int, *, masked: bool
) -> list[str]:
    """Documents of the same professional for the changes (one ITI-65 submission)."""
    bundle = provide_bundle(
        {"reference": f"Patient/{patient_id}"},
        [(b"scratch %d" % n, "text/plain") for n in range(count)],
    )
    for entry in bundle["entry"]:
        if masked and entry["resource"]["resourceType"] == "DocumentReference":
            entry["resource"]["securityLabel"] = [
                {"coding": [{"system": VISIBILITY, "code": MASKED}]}
            ]
    headers = tokens.software(client_id="hospital", on_behalf_of=OTHER_DOCTOR)
    response = client.post("/fhir", json=bundle, headers=headers)
    assert response.status_code == 200, response.text
    return [
        entry["response"]["location"].split("/")[1]
        for entry in response.json()["entry"]
        if entry["response"]["location"].startswith("DocumentReference/")
    ]


Setup = Callable[[TestClient, Services, Tokens, dict[str, str], str, str], None]


def _ok(response: Any) -> None:
    assert response.status_code in (200, 201, 204), response.text


def _expired_delegation(
    client: TestClient,
    services: Services,
    tokens: Tokens,
    own: dict[str, str],
    patient_id: str,
    patient_ins: str,
) -> None:
    """Granted forty days ago for thirty: the service itself, on a clock set back."""
    past = utcnow() - timedelta(days=40)
    service = PolicyService(
        services.access,
        services.documents,
        services.policies.envelope,
        emergency_minutes=60,
        point_of_care_days=30,
        trusted_issuers=services.policies.trusted_issuers,
        default_caregiver_issuer=services.policies.default_caregiver_issuer,
        clock=lambda: past,
    )
    principal = Principal(
        role=Role.PATIENT, subject=patient_ins, scopes=parse_scopes("patient/*.cruds")
    )
    with services.session_factory() as session, session.begin():
        actor = services.access.actor(session, principal)
        service.grant_delegation(
            session,
            actor,
            patient_id,
            caregiver=CAREGIVER,
            scope=DelegationScope.READ_UPLOAD,
            categories=["*"],
            expires_at=past + timedelta(days=30),
        )


def _revoked(
    client: TestClient,
    services: Services,
    tokens: Tokens,
    own: dict[str, str],
    patient_id: str,
    patient_ins: str,
) -> None:
    response = grant(client, own, patient_id, CAREGIVER, scope="read-upload")
    _ok(response)
    _ok(client.delete(policy_url(patient_id, f"/delegations/{response.json()['id']}"), headers=own))


def _nothing(*_: Any) -> None:
    return None


def _named(*wheres: str) -> Setup:
    def setup(c: TestClient, s: Services, t: Tokens, own: dict[str, str], pid: str, i: str) -> None:
        for where in wheres:
            _ok(add_professional(c, own, pid, where, DOCTOR))

    return setup


def _delegated(
    c: TestClient, s: Services, t: Tokens, own: dict[str, str], pid: str, i: str
) -> None:
    _ok(grant(c, own, pid, CAREGIVER, scope="read-upload"))


def _masked(c: TestClient, s: Services, t: Tokens, own: dict[str, str], pid: str, i: str) -> None:
    _named("/care-team")(c, s, t, own, pid, i)
    _delegated(c, s, t, own, pid, i)


def _emergency(
    c: TestClient, s: Services, t: Tokens, own: dict[str, str], pid: str, i: str
) -> None:
    _ok(declare_emergency(c, t.professional(DOCTOR), pid))


def _opted_out(
    c: TestClient, s: Services, t: Tokens, own: dict[str, str], pid: str, i: str
) -> None:
    _emergency(c, s, t, own, pid, i)
    body = {"refused": True}
    _ok(c.put(policy_url(pid, "/emergency-access-refusal"), json=body, headers=own))


SETUP: dict[str, Setup] = {
    "none": _nothing,
    "care-team": _named("/care-team"),
    "treating-doctor": _named("/treating-doctor"),
    "blocked": _named("/care-team", "/blocks"),
    "masked": _masked,
    "delegated": _delegated,
    "expired-delegation": _expired_delegation,
    "revoked": _revoked,
    "emergency": _emergency,
    "opted-out": _opted_out,
}


# -- calling each endpoint ---------------------------------------------------------------------


def _outcome(response: Any) -> str:
    if response.status_code in (200, 201, 204):
        return OK
    if response.status_code == 404:
        return HIDDEN
    if response.status_code == 403:
        return FORBIDDEN
    raise AssertionError(f"unexpected {response.status_code}: {response.text}")


def _call(scene: Scene, role: str, endpoint: str) -> str:
    client, headers = scene.client, scene.headers(role)
    pid, doc = scene.patient_id, scene.document_id
    if endpoint == "read":
        return _outcome(client.get(f"/fhir/DocumentReference/{doc}", headers=headers))
    if endpoint == "vread":
        return _outcome(client.get(f"/fhir/DocumentReference/{doc}/_history/1", headers=headers))
    if endpoint == "history":
        return _outcome(client.get(f"/fhir/DocumentReference/{doc}/_history", headers=headers))
    if endpoint == "content":
        return _outcome(client.get(f"/fhir/Binary/{scene.binary_id}", headers=headers))
    if endpoint == "search":
        response = client.get(f"/fhir/DocumentReference?patient={pid}", headers=headers)
        if response.status_code == 404:
            return HIDDEN
        assert response.status_code == 200, response.text
        found = {entry["resource"]["id"] for entry in response.json().get("entry", [])}
        return OK if doc in found else HIDDEN
    if endpoint == "patient":
        return _outcome(client.get(f"/fhir/Patient/{pid}", headers=headers))
    if endpoint == "patch-mask":
        target = scene.scratch_document()
        operation = (
            {"op": "remove", "path": "/securityLabel/0"}
            if scene.masked
            else {
                "op": "add",
                "path": "/securityLabel/-",
                "value": {"coding": [{"system": VISIBILITY, "code": MASKED}]},
            }
        )
        return _outcome(
            client.patch(
                f"/fhir/DocumentReference/{target}",
                json=[operation],
                headers={**headers, "Content-Type": "application/json-patch+json"},
            )
        )
    if endpoint == "delete":
        target = scene.scratch_document()
        return _outcome(client.delete(f"/fhir/DocumentReference/{target}", headers=headers))
    if endpoint == "create":
        response = client.post(
            "/fhir/DocumentReference",
            json=_upload(pid),
            headers=headers,
        )
        return _outcome(response)
    if endpoint == "consent":
        return _outcome(client.get(f"/fhir/Consent?patient={pid}", headers=headers))
    if endpoint == "policy":
        return _outcome(client.get(policy_url(pid), headers=headers))
    if endpoint == "policy-history":
        return _outcome(client.get(policy_url(pid, "/history"), headers=headers))
    if endpoint == "audit":
        return _outcome(client.get(f"/fhir/AuditEvent?patient={pid}", headers=headers))
    if endpoint == "block":
        body = {"professional": professional(scene.unique())}
        return _outcome(client.post(policy_url(pid, "/blocks"), json=body, headers=headers))
    if endpoint == "delegate":
        return _outcome(grant(client, headers, pid, f"someone-{scene.unique()}"))
    if endpoint == "point-of-care":
        return _outcome(
            client.post(
                f"/api/patients/{pid}/point-of-care-consent",
                json={"patientInformed": True, "patientAgreed": True},
                headers=headers,
            )
        )
    assert endpoint == "emergency"
    return _outcome(declare_emergency(client, headers, pid))


def _upload(patient_id: str) -> dict[str, Any]:
    return document_reference({"reference": f"Patient/{patient_id}"}, b"%PDF-1.7 upload")


# Declarations give the declaring professional a relationship: they run after every role
# has run everything else, so no role's answers depend on another's declarations.
DECLARATIONS = ("point-of-care", "emergency")


@pytest.mark.parametrize("state", STATES)
def test_every_endpoint_answers_every_role_as_the_matrix_says(client, services, tokens, state):
    scene = _build(client, services, tokens, state)
    got: dict[str, dict[str, str]] = {role: {} for role in ROLES}
    for phase in ([e for e in ENDPOINTS if e not in DECLARATIONS], DECLARATIONS):
        for role in ROLES:
            for endpoint in phase:
                got[role][endpoint] = _call(scene, role, endpoint)
    assert got == {role: EXPECTED[role][state] for role in ROLES}
