"""SMART v2 scopes: parsing, what a role's tokens may carry, what /oauth/token may grant,
and -- per interaction -- that a token never does more than its scopes allow, whatever its
role would permit."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import (
    DOCTOR,
    create_patient,
    document_reference,
    ins,
    patient_resource,
    publish,
)
from vault.access.permissions import SCOPE_NEEDED, Permission
from vault.access.policy import Actor, DocumentFacts, decide
from vault.identity.principal import Principal, Role
from vault.identity.scopes import (
    ROLE_CONTEXTS,
    Interaction,
    Scope,
    format_scope,
    grant,
    parse_scope,
    parse_scopes,
    scopes_allow,
)

LETTERS = "cruds"
RESOURCES = sorted({resource for resource, _ in SCOPE_NEEDED.values()})
CONTEXT = {
    Role.PATIENT: "patient",
    Role.CAREGIVER: "patient",
    Role.PROFESSIONAL: "user",
    Role.SOFTWARE: "system",
    Role.OPERATOR: "system",
}
PATIENT_ID = "patient-1"


# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "context", "resource", "letters"),
    [
        ("patient/DocumentReference.rs", "patient", "DocumentReference", "rs"),
        ("user/*.cruds", "user", "*", "cruds"),
        ("system/Binary.r", "system", "Binary", "r"),
        ("system/*.*", "system", "*", "cruds"),
        ("patient/*.read", "patient", "*", "rs"),
        ("user/Patient.write", "user", "Patient", "cud"),
    ],
)
def test_v2_and_v1_scopes_parse_into_interactions(text, context, resource, letters):
    scope = parse_scope(text)
    assert scope == Scope(context, resource, frozenset(letters))


@pytest.mark.parametrize(
    "text",
    [
        "openid",
        "launch/patient",
        "patient/DocumentReference.sr",  # v2 letters keep c-r-u-d-s order
        "patient/DocumentReference.rr",
        "patient/DocumentReference.x",
        "admin/*.cruds",
        "patient/documentreference.r",
        "patient/DocumentReference.",
        "patient/DocumentReference.rs?category=x",
    ],
)
def test_anything_else_is_not_a_resource_scope(text):
    assert parse_scope(text) is None


def test_format_scope_writes_letters_in_v2_order():
    assert format_scope(Scope("user", "Binary", frozenset("sdr"))) == "user/Binary.rds"


# -- what a role's token may carry --------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "kept"),
    [
        ("patient", {"patient/*.cruds"}),
        ("caregiver", {"patient/*.cruds"}),
        ("professional", {"user/*.cruds"}),
        ("software", {"system/*.cruds"}),
        ("operator", {"system/*.cruds"}),
    ],
)
def test_scopes_outside_the_roles_context_are_dropped_from_the_token(services, role, kept):
    everything = "patient/*.cruds user/*.cruds system/*.cruds"
    token = services.issuer.mint(
        role, "s-1", scope=everything, on_behalf_of=DOCTOR if role == "software" else None
    )
    principal = services.tokens.validate(token)
    assert {format_scope(scope) for scope in principal.scopes} == kept
    assert {scope.context for scope in principal.scopes} <= ROLE_CONTEXTS[role]


def test_patient_token_with_only_system_scopes_can_do_nothing(client, services):
    ins_value = ins(31)
    token = services.issuer.mint("patient", ins_value, scope="system/*.cruds user/*.cruds")
    response = client.post(
        "/fhir/Patient",
        json=patient_resource(ins_value),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    assert response.status_code in (403, 404), response.text


# -- what /oauth/token may grant ------------------------------------------------------------


def test_grant_narrows_each_requested_scope_to_what_is_registered():
    registered = parse_scopes("system/DocumentReference.cr system/Binary.r")
    requested = parse_scopes("system/DocumentReference.cruds system/*.r system/Patient.c")
    assert [format_scope(scope) for scope in grant(requested, registered)] == [
        "system/DocumentReference.cr",
        "system/DocumentReference.r",
        "system/Binary.r",
    ]


SCOPES = st.builds(
    Scope,
    context=st.sampled_from(["patient", "user", "system"]),
    resource=st.sampled_from(["*", *RESOURCES]),
    permissions=st.frozensets(st.sampled_from(LETTERS), min_size=1),
)


@given(requested=st.lists(SCOPES, max_size=5), registered=st.lists(SCOPES, max_size=5))
def test_granted_scopes_never_allow_what_the_registered_ones_do_not(requested, registered):
    granted = grant(tuple(requested), tuple(registered))
    for resource in RESOURCES:
        for interaction in Interaction:
            if scopes_allow(granted, resource, interaction):
                assert scopes_allow(tuple(registered), resource, interaction)
                assert scopes_allow(tuple(requested), resource, interaction)


# -- scopes against the policy, per interaction (pure) ------------------------------------


def actor_for(role: Role, scopes: tuple[Scope, ...]) -> tuple[Actor, DocumentFacts]:
    """An actor the policy favours as much as it can: the patient in their own record, the
    author of the document, so that only the scopes can stand in the way."""
    principal = Principal(
        role=role,
        subject="185077512345653" if role is Role.PATIENT else DOCTOR,
        scopes=scopes,
        on_behalf_of=DOCTOR if role is Role.SOFTWARE else None,
        client_id="lab" if role is Role.SOFTWARE else None,
    )
    if role is Role.PATIENT:
        actor = Actor(principal=principal, own_patient_id=PATIENT_ID)
        author = ("patient", PATIENT_ID)
    else:
        actor = Actor(principal=principal)
        author = ("professional", DOCTOR)
    document = DocumentFacts(
        patient_id=PATIENT_ID,
        author_kind=author[0],
        author_id=author[1],
        security_labels=frozenset(),
        status="current",
    )
    return actor, document


def full(role: Role) -> tuple[Scope, ...]:
    return (Scope(CONTEXT[role], "*", frozenset(LETTERS)),)


def allowed_cases() -> list[tuple[Role, Permission, bool]]:
    """Every (role, permission, about a document?) the policy allows with full scopes."""
    cases = []
    for role in (Role.PATIENT, Role.PROFESSIONAL, Role.SOFTWARE):
        for permission in SCOPE_NEEDED:
            for with_document in (True, False):
                actor, document = actor_for(role, full(role))
                facts = document if with_document else None
                if decide(actor, permission, PATIENT_ID, facts).allowed:
                    cases.append((role, permission, with_document))
    return cases


ALLOWED = allowed_cases()


def test_the_per_interaction_proof_covers_every_interaction():
    covered = {SCOPE_NEEDED[permission][1] for _, permission, _ in ALLOWED}
    assert covered == set(Interaction)
    assert {role for role, _, _ in ALLOWED} == {Role.PATIENT, Role.PROFESSIONAL, Role.SOFTWARE}


@pytest.mark.parametrize(
    ("role", "permission", "with_document"),
    ALLOWED,
    ids=[f"{r.value}-{p.value}-{'doc' if d else 'record'}" for r, p, d in ALLOWED],
)
def test_without_the_interactions_scope_the_policy_refuses(role, permission, with_document):
    resource, interaction = SCOPE_NEEDED[permission]
    context = CONTEXT[role]
    everything_else = (
        # Every other interaction on every resource ...
        Scope(context, "*", frozenset(LETTERS) - {interaction.value}),
        # ... and this interaction on every other resource.
        *(Scope(context, other, frozenset(LETTERS)) for other in RESOURCES if other != resource),
    )
    actor, document = actor_for(role, everything_else)
    decision = decide(actor, permission, PATIENT_ID, document if with_document else None)
    assert not decision.allowed
    assert decision.reason == "scope"

    # The one scope it needs is enough.
    needed = (Scope(context, resource, frozenset({interaction.value})),)
    actor, document = actor_for(role, needed)
    assert decide(actor, permission, PATIENT_ID, document if with_document else None).allowed


@given(
    role=st.sampled_from([Role.PATIENT, Role.PROFESSIONAL, Role.SOFTWARE, Role.OPERATOR]),
    permission=st.sampled_from(list(SCOPE_NEEDED)),
    scopes=st.lists(SCOPES, max_size=4),
    with_document=st.booleans(),
)
def test_no_decision_ever_allows_what_the_scopes_do_not(role, permission, scopes, with_document):
    actor, document = actor_for(role, tuple(scopes))
    decision = decide(actor, permission, PATIENT_ID, document if with_document else None)
    if decision.allowed:
        assert scopes_allow(tuple(scopes), *SCOPE_NEEDED[permission])


# -- the same, over HTTP ------------------------------------------------------------------


def professional(tokens, scope: str) -> dict[str, str]:
    return tokens.professional(scope=scope)


@pytest.fixture
def published(client, tokens):
    patient_id, ins_value = create_patient(client, tokens, seed=33)
    stored = publish(client, tokens.professional(), patient_id)
    binary = stored["content"][0]["attachment"]["url"]
    return patient_id, ins_value, stored["id"], binary


def test_create_needs_the_c_scope(client, tokens):
    patient_id, _ = create_patient(client, tokens, seed=34)
    body = document_reference({"reference": f"Patient/{patient_id}"})
    refused = client.post(
        "/fhir/DocumentReference",
        json=body,
        headers=professional(tokens, "user/DocumentReference.ruds user/Binary.cruds"),
    )
    assert refused.status_code in (403, 404), refused.text
    listed = client.get(
        f"/fhir/DocumentReference?patient={patient_id}", headers=tokens.professional()
    )
    assert listed.json().get("total", 0) == 0
    accepted = client.post(
        "/fhir/DocumentReference",
        json=body,
        headers=professional(tokens, "user/DocumentReference.c"),
    )
    assert accepted.status_code == 201, accepted.text


def test_read_needs_the_r_scope(client, tokens, published):
    _, _, document_id, _ = published
    path = f"/fhir/DocumentReference/{document_id}"
    refused = client.get(path, headers=professional(tokens, "user/DocumentReference.cuds"))
    assert refused.status_code == 404
    assert (
        client.get(path, headers=professional(tokens, "user/DocumentReference.r")).status_code
        == 200
    )


def test_search_needs_the_s_scope(client, tokens, published):
    patient_id, _, document_id, _ = published
    path = f"/fhir/DocumentReference?patient={patient_id}"

    def found_with(scope: str) -> list[str]:
        response = client.get(path, headers=professional(tokens, scope))
        assert response.status_code == 200, response.text
        return [entry["resource"]["id"] for entry in response.json().get("entry", [])]

    # A search one may not make looks like a search that finds nothing.
    assert found_with("user/DocumentReference.crud") == []
    assert found_with("user/DocumentReference.rs") == [document_id]


def test_update_needs_the_u_scope(client, tokens, published):
    _, _, document_id, _ = published
    path = f"/fhir/DocumentReference/{document_id}"
    change = json.dumps([{"op": "replace", "path": "/status", "value": "entered-in-error"}])

    def patch(scope: str):
        headers = {**professional(tokens, scope), "Content-Type": "application/json-patch+json"}
        return client.patch(path, content=change, headers=headers)

    assert patch("user/DocumentReference.crds").status_code in (403, 404)
    assert client.get(path, headers=tokens.professional()).json()["status"] == "current"
    assert patch("user/DocumentReference.ru").status_code == 200


def test_delete_needs_the_d_scope(client, tokens, published):
    _, _, document_id, _ = published
    path = f"/fhir/DocumentReference/{document_id}"
    assert client.delete(
        path, headers=professional(tokens, "user/DocumentReference.crus")
    ).status_code in (403, 404)
    assert client.get(path, headers=tokens.professional()).status_code == 200
    assert (
        client.delete(path, headers=professional(tokens, "user/DocumentReference.d")).status_code
        == 204
    )


def test_document_content_needs_the_binary_read_scope(client, tokens, published):
    _, ins_value, _, binary = published
    path = f"/fhir/{binary}"
    refused = client.get(
        path, headers=tokens.patient(ins_value, scope="patient/DocumentReference.rs")
    )
    assert refused.status_code == 404
    allowed = client.get(path, headers=tokens.patient(ins_value, scope="patient/Binary.r"))
    assert allowed.status_code == 200, allowed.text


def test_patient_record_needs_patient_scopes(client, tokens):
    ins_value = ins(35)
    refused = client.post(
        "/fhir/Patient",
        json=patient_resource(ins_value),
        headers=tokens.patient(ins_value, scope="patient/DocumentReference.crus patient/Patient.r"),
    )
    assert refused.status_code in (403, 404), refused.text
    created = client.post(
        "/fhir/Patient",
        json=patient_resource(ins_value),
        # The created record comes back in the response, which reading it takes.
        headers=tokens.patient(ins_value, scope="patient/Patient.cr"),
    )
    assert created.status_code == 201, created.text
    patient_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]
    path = f"/fhir/Patient/{patient_id}"
    assert (
        client.get(path, headers=tokens.patient(ins_value, scope="patient/Patient.c")).status_code
        == 404
    )
    assert (
        client.get(path, headers=tokens.patient(ins_value, scope="patient/Patient.r")).status_code
        == 200
    )


def test_a_patient_token_that_may_only_create_creates_the_record_without_reading_it(
    client, tokens, services
):
    ins_value = ins(36)
    created = client.post(
        "/fhir/Patient",
        json=patient_resource(ins_value),
        headers=tokens.patient(ins_value, scope="patient/Patient.c"),
    )
    assert created.status_code == 201, created.text
    # The outcome, not the record: reading it back is what the token may not do.
    assert created.json()["resourceType"] == "OperationOutcome"
    patient_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]
    read = client.get(
        f"/fhir/Patient/{patient_id}", headers=tokens.patient(ins_value, scope="patient/Patient.r")
    )
    assert read.status_code == 200, read.text
    assert read.json()["identifier"][0]["value"] == ins_value
