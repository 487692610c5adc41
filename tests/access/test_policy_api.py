"""The patient's access policy over HTTP: the treating doctor, the care team, blocks, masks,
visibility labels, emergency access, point-of-care consent, legal representatives, the
history of changes and the Consent view."""

from __future__ import annotations

from datetime import timedelta

from fhir.resources.R4B.consent import Consent

from tests.access.policy_support import (
    MASKED,
    VISIBILITY,
    add_professional,
    audit_entries,
    create_patient_born,
    declare_emergency,
    grant,
    policy_url,
    professional,
    publish_document,
    sees,
    set_mask,
    years_ago,
)
from tests.factories import (
    DOCTOR,
    OTHER_DOCTOR,
    Tokens,
    create_patient,
    document_reference,
    ins,
)
from vault.access.state import EmergencyMode
from vault.identity.principal import Principal, Role
from vault.identity.scopes import parse_scopes
from vault.models.base import utcnow
from vault.policies.management import PolicyService

DENTIST = "810000000040"
STRANGER = "810000000777"


def _patch(client, headers, document_id, operations):
    return client.patch(
        f"/fhir/DocumentReference/{document_id}",
        json=operations,
        headers={**headers, "Content-Type": "application/json-patch+json"},
    )


def _label(code: str) -> dict:
    return {"coding": [{"system": VISIBILITY, "code": code}]}


def test_the_treating_doctor_reads_the_record_and_a_stranger_does_not(client, tokens):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    document_id, binary_id = publish_document(client, tokens.professional(OTHER_DOCTOR), patient_id)

    assert not sees(client, tokens.professional(DOCTOR), document_id)
    response = add_professional(client, own, patient_id, "/treating-doctor", DOCTOR)
    assert response.status_code == 201, response.text
    assert response.json()["professional"] == professional(DOCTOR)

    assert sees(client, tokens.professional(DOCTOR), document_id)
    assert client.get(f"/fhir/Binary/{binary_id}", headers=tokens.professional(DOCTOR)).content
    assert not sees(client, tokens.professional(STRANGER), document_id)

    # A new treating doctor replaces the previous one.
    response = add_professional(client, own, patient_id, "/treating-doctor", STRANGER)
    assert response.status_code == 201
    assert not sees(client, tokens.professional(DOCTOR), document_id)
    assert sees(client, tokens.professional(STRANGER), document_id)
    policy = client.get(policy_url(patient_id), headers=own).json()
    assert policy["treatingDoctor"]["professional"] == professional(STRANGER)


def test_naming_a_care_team_member_twice_changes_nothing_and_rpps_names_the_same_person(
    client, tokens
):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    first = add_professional(client, own, patient_id, "/care-team", DOCTOR)
    assert first.status_code == 201
    again = client.post(
        policy_url(patient_id, "/care-team"),
        json={"professional": {"system": "https://rpps.esante.gouv.fr", "value": DOCTOR[1:]}},
        headers=own,
    )
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert client.get(policy_url(patient_id), headers=own).json()["version"] == 1

    removed = client.delete(policy_url(patient_id, f"/care-team/{DOCTOR}"), headers=own)
    assert removed.status_code == 204
    assert client.get(policy_url(patient_id), headers=own).json()["careTeam"] == []


def test_a_blocked_professional_is_refused_everything_even_as_treating_doctor_and_author(
    client, tokens
):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    doctor = tokens.professional(DOCTOR)
    theirs, _ = publish_document(client, doctor, patient_id)
    add_professional(client, own, patient_id, "/treating-doctor", DOCTOR)
    response = add_professional(client, own, patient_id, "/blocks", DOCTOR)
    assert response.status_code == 201, response.text

    assert not sees(client, doctor, theirs)
    assert client.get(f"/fhir/Patient/{patient_id}", headers=doctor).status_code == 404
    refused = client.post(
        "/fhir/DocumentReference",
        json=document_reference({"reference": f"Patient/{patient_id}"}),
        headers=doctor,
    )
    assert refused.status_code == 404
    assert declare_emergency(client, doctor, patient_id).status_code == 404

    assert (
        client.delete(policy_url(patient_id, f"/blocks/{DOCTOR}"), headers=own).status_code == 204
    )
    assert sees(client, doctor, theirs)


def test_a_masked_document_is_seen_only_by_the_patient_its_author_and_the_treating_doctor(
    client, tokens
):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    author = tokens.professional(OTHER_DOCTOR)
    document_id, _ = publish_document(client, author, patient_id)
    add_professional(client, own, patient_id, "/treating-doctor", DOCTOR)
    add_professional(client, own, patient_id, "/care-team", STRANGER)

    response = set_mask(client, own, patient_id, document_id)
    assert response.status_code == 200, response.text
    assert response.json() == {"document": document_id, "masked": True, "version": 2}

    assert sees(client, own, document_id)
    assert sees(client, author, document_id)
    assert sees(client, tokens.professional(DOCTOR), document_id)
    assert not sees(client, tokens.professional(STRANGER), document_id)
    policy = client.get(policy_url(patient_id), headers=own).json()
    assert policy["maskedDocuments"] == [document_id]

    response = client.delete(policy_url(patient_id, f"/masks/{document_id}"), headers=own)
    assert response.json()["masked"] is False
    assert sees(client, tokens.professional(STRANGER), document_id)
    # Masking and unmasking are metadata changes: every version is kept.
    history = client.get(f"/fhir/DocumentReference/{document_id}/_history", headers=own).json()
    assert len(history["entry"]) == 3


def test_the_patient_masks_with_the_mhd_metadata_update_but_only_the_patient_unmasks(
    client, tokens, services
):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    author = tokens.professional(OTHER_DOCTOR)
    document_id, _ = publish_document(client, author, patient_id)

    masked = _patch(
        client,
        own,
        document_id,
        [{"op": "add", "path": "/securityLabel/-", "value": _label(MASKED)}],
    )
    assert masked.status_code == 200, masked.text
    assert masked.headers["ETag"] == 'W/"2"'

    # The author may not take the patient's mask off (403: they can see the document).
    unmask = [{"op": "remove", "path": "/securityLabel/0"}]
    assert _patch(client, author, document_id, unmask).status_code == 403
    # Nor may the patient change the professional's document otherwise.
    status = [{"op": "replace", "path": "/status", "value": "entered-in-error"}]
    assert _patch(client, own, document_id, status).status_code == 403
    assert _patch(client, own, document_id, unmask).status_code == 200
    updates = [
        (entry.outcome, entry.actor_role)
        for entry in audit_entries(services, patient_id)
        if entry.detail.get("permission") == "document:update"
    ]
    assert updates == [
        ("success", "patient"),
        ("denied", "professional"),
        ("denied", "patient"),
        ("success", "patient"),
    ]


def test_a_result_invisible_to_the_patient_appears_once_its_author_lifts_the_label(client, tokens):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    author = tokens.professional(OTHER_DOCTOR)
    document_id, binary_id = publish_document(
        client, author, patient_id, labels=("INVISIBLE_PATIENT",)
    )
    assert not sees(client, own, document_id)
    assert client.get(f"/fhir/Binary/{binary_id}", headers=own).status_code == 404
    found = client.get(f"/fhir/DocumentReference?patient={patient_id}", headers=own).json()
    assert found.get("entry", []) == []
    # The patient cannot lift it: to them the document does not exist.
    lift = [{"op": "remove", "path": "/securityLabel/0"}]
    assert _patch(client, own, document_id, lift).status_code == 404

    assert _patch(client, author, document_id, lift).status_code == 200
    assert sees(client, own, document_id)


def test_emergency_access_needs_a_reason_reads_unmasked_documents_and_is_flagged(
    client, tokens, services
):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    author = tokens.professional(OTHER_DOCTOR)
    plain, _ = publish_document(client, author, patient_id)
    hidden, _ = publish_document(client, author, patient_id, labels=(MASKED,))
    doctor = tokens.professional(DOCTOR)

    no_reason = client.post(
        f"/api/patients/{patient_id}/emergency-access", json={"reason": "  "}, headers=doctor
    )
    assert no_reason.status_code == 422
    assert no_reason.json()["resourceType"] == "OperationOutcome"

    response = declare_emergency(client, doctor, patient_id, reason="Coma, allergies?")
    assert response.status_code == 201, response.text
    assert response.json()["expires"] > response.json()["since"]

    assert sees(client, doctor, plain)
    assert not sees(client, doctor, hidden)
    entries = audit_entries(services, patient_id)
    read = [e for e in entries if e.resource_id == plain and e.actor_id == DOCTOR]
    assert read[-1].purpose == "ETREAT"
    assert read[-1].detail["emergency"] == "true"
    assert read[-1].detail["emergency_access"] == response.json()["id"]
    declared = [e for e in entries if e.detail.get("permission") == "emergency:declare"]
    assert declared[0].detail["emergency"] == "true"
    # The patient reads the reason; the audit log holds none of it.
    policy = client.get(policy_url(patient_id), headers=own).json()
    assert policy["emergencyAccesses"][0]["reason"] == "Coma, allergies?"
    assert all("Coma" not in str(entry.detail) for entry in entries)


def test_an_emergency_access_ends_when_its_time_is_up(client, tokens, services):
    patient_id, _ = create_patient(client, tokens)
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), patient_id)
    past = utcnow() - timedelta(hours=5)
    service = PolicyService(
        services.access,
        services.documents,
        services.policies.envelope,
        emergency_minutes=240,
        point_of_care_days=1,
        clock=lambda: past,
    )
    principal = Principal(
        role=Role.PROFESSIONAL,
        subject=DOCTOR,
        scopes=parse_scopes("user/*.cruds"),
        profession="10",
    )
    with services.session_factory() as session, session.begin():
        actor = services.access.actor(session, principal)
        service.declare_emergency(
            session, actor, patient_id, reason="arrêt cardiaque", mode=EmergencyMode.BREAK_GLASS
        )
    assert not sees(client, tokens.professional(DOCTOR), document_id)


def test_refusing_emergency_access_in_advance_stops_declarations_and_running_accesses(
    client, tokens
):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), patient_id)
    doctor = tokens.professional(DOCTOR)
    assert declare_emergency(client, doctor, patient_id).status_code == 201
    assert sees(client, doctor, document_id)

    refusal = client.put(
        policy_url(patient_id, "/emergency-access-refusal"), json={"refused": True}, headers=own
    )
    assert refusal.status_code == 200
    assert not sees(client, doctor, document_id)
    assert declare_emergency(client, tokens.professional(STRANGER), patient_id).status_code == 404

    client.put(
        policy_url(patient_id, "/emergency-access-refusal"), json={"refused": False}, headers=own
    )
    assert sees(client, doctor, document_id)


def test_samu_regulation_mode_is_for_doctors(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    nurse = tokens.professional(STRANGER, profession="60")
    assert declare_emergency(client, nurse, patient_id, mode="samu-regulation").status_code == 404
    doctor = tokens.professional(DOCTOR)
    response = declare_emergency(client, doctor, patient_id, mode="samu-regulation")
    assert response.status_code == 201
    assert response.json()["scope"] == "samu-regulation"


def test_point_of_care_consent_opens_the_record_shows_on_the_policy_and_can_be_withdrawn(
    client, tokens
):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), patient_id)
    doctor = tokens.professional(DOCTOR)
    url = f"/api/patients/{patient_id}/point-of-care-consent"

    refused = client.post(
        url, json={"patientInformed": True, "patientAgreed": False}, headers=doctor
    )
    assert refused.status_code == 422
    response = client.post(
        url, json={"patientInformed": True, "patientAgreed": True}, headers=doctor
    )
    assert response.status_code == 201, response.text
    assert sees(client, doctor, document_id)
    policy = client.get(policy_url(patient_id), headers=own).json()
    assert [e["professional"]["value"] for e in policy["pointOfCare"]] == [DOCTOR]

    withdrawn = client.delete(policy_url(patient_id, f"/point-of-care/{DOCTOR}"), headers=own)
    assert withdrawn.status_code == 204
    assert not sees(client, doctor, document_id)


def test_a_legal_representative_manages_a_minors_record_without_what_is_hidden_from_them(
    client, tokens
):
    child_id, child_ins = create_patient_born(client, tokens, 11, years_ago(12))
    author = tokens.professional(OTHER_DOCTOR)
    shared, _ = publish_document(client, author, child_id)
    secret, _ = publish_document(
        client, author, child_id, labels=("INVISIBLE_REPRESENTANTS_LEGAUX",)
    )
    parent_ins = ins(12)
    parent = tokens.patient(parent_ins)
    assert not sees(client, parent, shared)

    # An operator registers the parent, named by INS, once parental authority is checked.
    operator = Tokens._headers(tokens.issuer.mint("operator", "ops-1", scope="system/Consent.u"))
    response = client.post(
        policy_url(child_id, "/representatives"),
        json={"representative": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": parent_ins}},
        headers=operator,
    )
    assert response.status_code == 201, response.text
    assert parent_ins not in response.text

    assert sees(client, parent, shared)
    assert not sees(client, parent, secret)
    assert sees(client, tokens.patient(child_ins), secret)
    # The parent manages the record: a care team member, a mask ...
    assert add_professional(client, parent, child_id, "/care-team", DOCTOR).status_code == 201
    assert set_mask(client, parent, child_id, shared).status_code == 200
    # ... but never lifts what hides a document from them, nor sees it listed as masked.
    assert client.get(policy_url(child_id), headers=parent).json()["maskedDocuments"] == [shared]
    lift = [{"op": "remove", "path": "/securityLabel/0"}]
    assert _patch(client, parent, secret, lift).status_code == 404
    # The operator sees nothing of the record.
    assert client.get(policy_url(child_id), headers=operator).status_code == 404


def test_the_policy_history_keeps_every_change_with_its_version_and_author(client, tokens):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    add_professional(client, own, patient_id, "/care-team", DOCTOR)
    add_professional(client, own, patient_id, "/blocks", STRANGER)
    client.delete(policy_url(patient_id, f"/care-team/{DOCTOR}"), headers=own)

    history = client.get(policy_url(patient_id, "/history"), headers=own).json()
    assert [(e["version"], e["change"], e["entry"]["kind"]) for e in history] == [
        (3, "end", "care-team"),
        (2, "add", "block"),
        (1, "add", "care-team"),
    ]
    assert {e["byRole"] for e in history} == {"patient"}
    assert {e["by"] for e in history} == {patient_id}


def test_the_policy_reads_as_fhir_consent_resources(client, tokens):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), patient_id)
    add_professional(client, own, patient_id, "/treating-doctor", DOCTOR)
    add_professional(client, own, patient_id, "/blocks", STRANGER)
    grant(client, own, patient_id, "aidant-7", scope="read-upload", categories=("10",))
    client.put(
        policy_url(patient_id, "/emergency-access-refusal"), json={"refused": True}, headers=own
    )
    set_mask(client, own, patient_id, document_id)

    response = client.get("/fhir/Consent", headers=own)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    resources = [entry["resource"] for entry in response.json()["entry"]]
    for resource in resources:
        Consent.model_validate(resource)
    kinds = {
        resource["category"][1]["coding"][0]["code"]: resource["provision"]["type"]
        for resource in resources
    }
    assert kinds == {
        "treating-doctor": "permit",
        "block": "deny",
        "delegation": "permit",
        "emergency-opt-out": "deny",
        "mask": "deny",
    }
    mask = next(r for r in resources if r["id"].startswith("masks-"))
    assert mask["provision"]["data"][0]["reference"]["reference"] == (
        f"DocumentReference/{document_id}"
    )
    # Another patient learns nothing of this policy.
    other_id, other_ins = create_patient(client, tokens, seed=2)
    assert (
        client.get(f"/fhir/Consent?patient={patient_id}", headers=tokens.patient(other_ins))
    ).status_code == 404
    assert other_id != patient_id


def test_another_patient_can_neither_read_nor_change_my_policy(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    _, other_ins = create_patient(client, tokens, seed=2)
    other = tokens.patient(other_ins)
    assert client.get(policy_url(patient_id), headers=other).status_code == 404
    assert client.get(policy_url(patient_id, "/history"), headers=other).status_code == 404
    assert add_professional(client, other, patient_id, "/care-team", DOCTOR).status_code == 404
    assert grant(client, other, patient_id, "aidant-1").status_code == 404
    # 'me' is always the caller's own record.
    assert client.get(policy_url("me"), headers=other).json()["patient"] != patient_id


def test_bad_policy_input_gets_an_operation_outcome_and_changes_nothing(client, tokens):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    bad = [
        ("post", "/care-team", {"professional": {"system": "urn:other", "value": "1"}}, 422),
        ("post", "/care-team", {"professional": {"value": DOCTOR}}, 400),
        ("post", "/care-team", {"doctor": DOCTOR}, 400),
        ("post", "/masks", {"document": "does-not-exist"}, 404),
        ("put", "/emergency-access-refusal", {"refused": "perhaps"}, 400),
        (
            "post",
            "/representatives",
            {"representative": {"system": "urn:other", "value": "x"}},
            422,
        ),
    ]
    for method, where, body, status in bad:
        response = getattr(client, method)(policy_url(patient_id, where), json=body, headers=own)
        assert response.status_code == status, (where, body, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get(policy_url(patient_id), headers=own).json()["version"] == 0


def test_the_matrix_keeps_a_dentist_in_the_care_team_from_advance_directives(client, tokens):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    author = tokens.professional(OTHER_DOCTOR)
    directives, _ = publish_document(client, author, patient_id, type_code="42348-3")
    lab, _ = publish_document(client, author, patient_id, type_code="11502-2")
    add_professional(client, own, patient_id, "/care-team", DENTIST)
    dentist = tokens.professional(DENTIST, profession="40")
    assert sees(client, dentist, lab)
    assert not sees(client, dentist, directives)
    found = client.get(f"/fhir/DocumentReference?patient={patient_id}", headers=dentist).json()
    assert [entry["resource"]["id"] for entry in found["entry"]] == [lab]


def test_software_reads_only_for_a_professional_of_known_profession_in_the_care_team(
    client, tokens
):
    patient_id, patient_ins = create_patient(client, tokens)
    own = tokens.patient(patient_ins)
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), patient_id)
    add_professional(client, own, patient_id, "/care-team", DOCTOR)
    unknown = tokens.software(on_behalf_of=DOCTOR)
    assert not sees(client, unknown, document_id)
    known = Tokens._headers(
        tokens.issuer.mint("software", "lab", on_behalf_of=DOCTOR, extra={"profession": "10"})
    )
    assert sees(client, known, document_id)
    elsewhere = Tokens._headers(
        tokens.issuer.mint("software", "lab", on_behalf_of=STRANGER, extra={"profession": "10"})
    )
    assert not sees(client, elsewhere, document_id)


def test_the_capability_statement_lists_the_consent_search(client):
    statement = client.get("/fhir/metadata").json()
    resources = {item["type"]: item for item in statement["rest"][0]["resource"]}
    assert resources["Consent"]["interaction"] == [{"code": "search-type"}]
