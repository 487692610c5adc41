"""Inviting a caregiver (issue 14 §5): the patient offers a delegation by a one-time code;
a caregiver signed in with their own identity accepts it and the delegation names that
identity (issuer and subject); the code cannot be used twice; an unknown, used or expired
code gets one answer; the patient lists delegations, in force and past, with who holds
them, and revokes one in one step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tests.access.policy_support import (
    audit_entries,
    create_patient_born,
    policy_url,
    publish_document,
    sees,
    years_ago,
)
from tests.factories import OTHER_DOCTOR, Tokens, create_patient, ins
from vault.identity.principal import Principal, Role
from vault.identity.scopes import parse_scopes
from vault.models import CaregiverInvitation
from vault.models.base import utcnow
from vault.policies.management import PolicyService, code_hash

UNKNOWN = "Invitation not found, already used or expired"


def _in_days(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def _invite(client, headers, patient_id: str, **body):
    payload = {"mayAdd": False, "categories": ["*"], "until": _in_days(90), **body}
    return client.post(policy_url(patient_id, "/invitations"), json=payload, headers=headers)


def _accept(client, headers, code: str):
    return client.post("/api/invitations/accept", json={"code": code}, headers=headers)


def _caregiver(tokens: Tokens, subject: str, name: str | None = None) -> dict[str, str]:
    extra = {"name": name} if name else None
    return Tokens._headers(tokens.issuer.mint("caregiver", subject, extra=extra))


def test_an_accepted_invitation_is_a_delegation_bound_to_whoever_accepted_it(
    client, tokens, services
):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), patient_id)
    invited = _invite(client, own, patient_id, mayAdd=True, categories=["10"])
    assert invited.status_code == 201, invited.text
    body = invited.json()
    code = body["code"]
    assert len(code) >= 40
    assert body["scope"] == "read-upload"
    expires = datetime.fromisoformat(body["codeExpires"])
    assert timedelta(days=6) < expires - datetime.now(UTC) <= timedelta(days=7)
    with services.session_factory() as session:
        stored = session.scalars(select(CaregiverInvitation)).one()
        # Only the code's hash is kept.
        assert stored.code_hash == code_hash(code)
        assert code.encode() not in stored.code_hash

    caregiver = _caregiver(tokens, "marie-9", name="Marie Durand")
    assert not sees(client, caregiver, document_id)
    accepted = _accept(client, caregiver, code)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["patient"] == patient_id
    assert accepted.json()["relationship"]["grantee"]["value"] == "marie-9"
    assert accepted.json()["relationship"]["granteeIssuer"] == tokens.issuer.issuer
    assert sees(client, caregiver, document_id)
    # The caregiver finds the patient they act for.
    relationships = client.get("/api/me/relationships", headers=caregiver).json()
    assert [item["patient"] for item in relationships] == [patient_id]

    # The code is used up, for them and for anyone else.
    again = _accept(client, caregiver, code)
    other = _accept(client, _caregiver(tokens, "someone-else"), code)
    assert (again.status_code, other.status_code) == (404, 404)
    assert again.json()["issue"][0]["diagnostics"] == UNKNOWN
    # The patient sees who holds it, with the name their identity provider gave.
    listed = client.get(policy_url(patient_id, "/delegations"), headers=own).json()
    assert listed["invitations"] == []
    (held,) = listed["delegations"]
    assert held["displayName"] == "Marie Durand"
    assert held["inForce"] is True
    assert held["delegation"]["grantee"]["value"] == "marie-9"
    # The acceptance is in the patient's history, in the caregiver's name.
    accepts = [
        e
        for e in audit_entries(services, patient_id)
        if e.detail.get("permission") == "invitation:accept"
    ]
    assert [(e.actor_role, e.actor_id, e.outcome) for e in accepts] == [
        ("caregiver", "marie-9", "success")
    ]

    # Revoked in one step: refused at once, and listed as past.
    revoked = client.delete(
        policy_url(patient_id, f"/delegations/{held['delegation']['id']}"), headers=own
    )
    assert revoked.status_code == 204
    assert not sees(client, caregiver, document_id)
    listed = client.get(policy_url(patient_id, "/delegations"), headers=own).json()
    assert [(d["inForce"], d["ended"] is not None) for d in listed["delegations"]] == [
        (False, True)
    ]


def test_unknown_used_and_expired_codes_get_the_same_answer(client, tokens, services):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    used = _invite(client, own, patient_id).json()["code"]
    assert _accept(client, _caregiver(tokens, "a-1"), used).status_code == 201

    # An invitation made eight days ago: its code has expired.
    past = utcnow() - timedelta(days=8)
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
        role=Role.PATIENT,
        subject=patient_ins,
        scopes=parse_scopes("patient/*.cruds"),
        issuer=tokens.issuer.issuer,
    )
    with services.session_factory() as session, session.begin():
        actor = services.access.actor(session, principal)
        _, expired = service.invite_caregiver(
            session,
            actor,
            patient_id,
            may_add=False,
            categories=["*"],
            until=past + timedelta(days=60),
        )

    answers = {
        _accept(client, _caregiver(tokens, "b-2"), code).text
        for code in (used, expired, "not-a-code-at-all", "x" * 43)
    }
    assert len(answers) == 1
    assert UNKNOWN in answers.pop()


def test_only_a_caregiver_accepts_and_a_caregiver_never_invites(client, tokens):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    code = _invite(client, own, patient_id).json()["code"]
    for headers in (tokens.professional(OTHER_DOCTOR), tokens.patient(ins(5))):
        assert _accept(client, headers, code).status_code == 404
    # Refused above, the code still works for a caregiver.
    assert _accept(client, _caregiver(tokens, "c-3"), code).status_code == 201
    # A caregiver passes nothing on, and a stranger invites no one into another's record.
    assert _invite(client, _caregiver(tokens, "c-3"), patient_id).status_code == 404
    assert _invite(client, tokens.patient(ins(5)), patient_id).status_code == 404


def test_an_invitation_lasts_at_most_a_year_and_names_categories(client, tokens):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    for body in ({"until": _in_days(400)}, {"until": _in_days(-1)}, {"categories": []}):
        response = _invite(client, own, patient_id, **body)
        assert response.status_code == 422, body
        assert response.json()["resourceType"] == "OperationOutcome"


def test_a_minors_representative_invites_for_the_minor(client, tokens):
    child_id, _ = create_patient_born(client, tokens, 41, years_ago(7))
    parent_ins = ins(42)
    operator = Tokens._headers(tokens.issuer.mint("operator", "ops-1", scope="system/Consent.u"))
    registered = client.post(
        policy_url(child_id, "/representatives"),
        json={"representative": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": parent_ins}},
        headers=operator,
    )
    assert registered.status_code == 201, registered.text
    invited = _invite(client, tokens.patient(parent_ins), child_id)
    assert invited.status_code == 201, invited.text
    accepted = _accept(client, _caregiver(tokens, "nanny-1"), invited.json()["code"])
    assert accepted.status_code == 201
    assert accepted.json()["patient"] == child_id


def _withdraw(client, headers, patient_id: str, invitation_id: str):
    return client.delete(policy_url(patient_id, f"/invitations/{invitation_id}"), headers=headers)


def test_a_withdrawn_invitations_code_is_refused_like_an_unknown_one(client, tokens, services):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    invited = _invite(client, own, patient_id).json()
    kept = _invite(client, own, patient_id).json()

    withdrawn = _withdraw(client, own, patient_id, invited["id"])
    assert withdrawn.status_code == 204, withdrawn.text
    # No longer waiting; the other invitation is untouched.
    listed = client.get(policy_url(patient_id, "/delegations"), headers=own).json()
    assert [item["id"] for item in listed["invitations"]] == [kept["id"]]
    # Its code gets the answer an unknown code gets, word for word.
    caregiver = _caregiver(tokens, "d-4")
    refused = _accept(client, caregiver, invited["code"])
    unknown = _accept(client, caregiver, "x" * 43)
    assert (refused.status_code, refused.text) == (unknown.status_code, unknown.text)
    assert refused.status_code == 404
    assert UNKNOWN in refused.text
    assert client.get("/api/me/relationships", headers=caregiver).json() == []
    # Withdrawn once: a second time finds nothing waiting.
    assert _withdraw(client, own, patient_id, invited["id"]).status_code == 404
    # Decided and recorded like the other changes, in the patient's name.
    withdrawals = [
        (e.actor_role, e.outcome, e.detail.get("permission"), e.detail.get("invitation"))
        for e in audit_entries(services, patient_id)
        if e.detail.get("change") == "withdraw"
    ]
    assert withdrawals[0] == ("patient", "success", "delegation:revoke", invited["id"])
    # The invitation kept still works.
    assert _accept(client, caregiver, kept["code"]).status_code == 201


def test_an_accepted_invitation_is_revoked_as_a_delegation_not_withdrawn(client, tokens):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), patient_id)
    invited = _invite(client, own, patient_id).json()
    caregiver = _caregiver(tokens, "e-5")
    assert _accept(client, caregiver, invited["code"]).status_code == 201

    refused = _withdraw(client, own, patient_id, invited["id"])
    assert refused.status_code == 409
    assert "revoke the delegation" in refused.json()["issue"][0]["diagnostics"]
    assert sees(client, caregiver, document_id)
    (held,) = client.get(policy_url(patient_id, "/delegations"), headers=own).json()["delegations"]
    assert held["inForce"] is True


def test_another_patients_invitation_is_invisible_and_a_caregiver_withdraws_none(client, tokens):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    invited = _invite(client, own, patient_id).json()
    other_id, other_ins = create_patient(client, tokens, seed=7)
    other = tokens.patient(other_ins)
    # Neither through the other patient's own record nor through the inviter's.
    for target in (other_id, patient_id, "me"):
        response = _withdraw(client, other, target, invited["id"])
        assert response.status_code == 404, (target, response.text)
    # A caregiver holding a delegation on the record passes nothing on, and takes none back.
    helper = _caregiver(tokens, "f-6")
    assert (
        _accept(client, helper, _invite(client, own, patient_id).json()["code"]).status_code == 201
    )
    assert _withdraw(client, helper, patient_id, invited["id"]).status_code == 404
    assert (
        _withdraw(client, tokens.professional(OTHER_DOCTOR), patient_id, invited["id"]).status_code
        == 404
    )
    # All refused, the code still works.
    assert _accept(client, _caregiver(tokens, "g-7"), invited["code"]).status_code == 201


def test_a_minors_representative_withdraws_the_invitation_they_made(client, tokens):
    child_id, _ = create_patient_born(client, tokens, 43, years_ago(6))
    parent_ins = ins(44)
    operator = Tokens._headers(tokens.issuer.mint("operator", "ops-1", scope="system/Consent.u"))
    registered = client.post(
        policy_url(child_id, "/representatives"),
        json={"representative": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": parent_ins}},
        headers=operator,
    )
    assert registered.status_code == 201, registered.text
    parent = tokens.patient(parent_ins)
    invited = _invite(client, parent, child_id).json()
    assert _withdraw(client, parent, child_id, invited["id"]).status_code == 204
    assert _accept(client, _caregiver(tokens, "nanny-2"), invited["code"]).status_code == 404
