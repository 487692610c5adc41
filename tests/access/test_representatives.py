"""Legal representatives (issue 12, item 1): registered only for a minor (from the record's
birth date) or for an adult under a protection measure the request names; never by an
operator for themselves; announced to the patient (an adult) and to every representative
already registered; and every access they make is recorded in their own name, on behalf
of the patient."""

from __future__ import annotations

from sqlalchemy import select

from tests.access.policy_support import (
    audit_entries,
    create_patient_born,
    policy_url,
    publish_document,
    sees,
    years_ago,
)
from tests.factories import OTHER_DOCTOR, Tokens, ins
from vault.models import AccessPolicyEntry, AuditNotification

INS = "urn:oid:1.2.250.1.213.1.4.8"
MEASURE = {"type": "tutelle", "reference": "TJ Lyon RG 26/01234"}


def _operator(tokens: Tokens, subject: str = "ops-1") -> dict[str, str]:
    return Tokens._headers(tokens.issuer.mint("operator", subject, scope="system/Consent.u"))


def _register(client, headers, patient_id, representative: dict, **extra):
    return client.post(
        policy_url(patient_id, "/representatives"),
        json={"representative": representative, **extra},
        headers=headers,
    )


def _outbox(services, patient_id: str) -> list[tuple[str, str | None]]:
    """The notifications about representatives, with whom each is addressed to."""
    with services.session_factory() as session:
        rows = session.execute(
            select(AuditNotification.kind, AuditNotification.recipient)
            .where(
                AuditNotification.patient_id == patient_id,
                AuditNotification.kind == "representative-registered",
            )
            .order_by(AuditNotification.id)
        ).all()
    return [(row.kind, row.recipient) for row in rows]


def test_an_operator_cannot_make_anyone_the_representative_of_an_adult_without_a_measure(
    client, tokens, services
):
    adult_id, adult_ins = create_patient_born(client, tokens, 21, years_ago(40))
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), adult_id)
    stranger_ins = ins(22)
    response = _register(
        client, _operator(tokens), adult_id, {"system": INS, "value": stranger_ins}
    )
    assert response.status_code == 422, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "protection measure" in response.text
    assert not sees(client, tokens.patient(stranger_ins), document_id)
    own = tokens.patient(adult_ins)
    assert client.get(policy_url(adult_id), headers=own).json()["representatives"] == []
    # The refusal is on record, in the operator's name.
    refused = [e for e in audit_entries(services, adult_id) if e.actor_role == "operator"]
    assert [e.outcome for e in refused] == ["denied"]
    # Nor may the adult patient name one without a measure: a caregiver delegation is
    # the way to let someone help.
    assert (
        _register(client, own, adult_id, {"system": INS, "value": stranger_ins}).status_code == 422
    )


def test_a_named_measure_registers_an_adults_representative_and_the_patient_is_told(
    client, tokens, services
):
    adult_id, adult_ins = create_patient_born(client, tokens, 23, years_ago(70))
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), adult_id)
    tutor_ins = ins(24)
    response = _register(
        client, _operator(tokens), adult_id, {"system": INS, "value": tutor_ins}, measure=MEASURE
    )
    assert response.status_code == 201, response.text
    assert response.json()["scope"] == "tutelle"
    assert MEASURE["reference"] not in response.text
    with services.session_factory() as session:
        entry = session.scalar(
            select(AccessPolicyEntry).where(AccessPolicyEntry.id == response.json()["id"])
        )
        assert entry is not None
        assert entry.note_ciphertext is not None
        assert MEASURE["reference"].encode() not in entry.note_ciphertext
    assert _outbox(services, adult_id) == [("representative-registered", None)]

    tutor = tokens.patient(tutor_ins)
    assert sees(client, tutor, document_id)
    # The read is the tutor's, in their own name, on behalf of the patient.
    read = [
        e
        for e in audit_entries(services, adult_id)
        if e.resource_id == document_id and e.action == "R"
    ][-1]
    assert read.actor_role == "legal-representative"
    assert read.actor_id is not None
    assert read.actor_id.startswith("ins:")
    assert read.on_behalf_of == adult_id
    history = client.get(
        f"/fhir/AuditEvent?patient={adult_id}", headers=tokens.patient(adult_ins)
    ).json()
    users = [
        agent
        for event in history["entry"]
        for agent in event["resource"]["agent"]
        if agent.get("requestor")
    ]
    assert any(agent["who"].get("display") == "legal-representative" for agent in users)


def test_every_existing_representative_hears_of_a_new_one_and_a_minor_is_not_told_directly(
    client, tokens, services
):
    child_id, _ = create_patient_born(client, tokens, 25, years_ago(9))
    operator = _operator(tokens)
    first = _register(client, operator, child_id, {"system": INS, "value": ins(26)})
    assert first.status_code == 201, first.text
    assert first.json()["scope"] == "minor"
    assert _outbox(services, child_id) == []
    second = _register(client, operator, child_id, {"system": INS, "value": ins(27)})
    assert second.status_code == 201, second.text
    assert _outbox(services, child_id) == [("representative-registered", first.json()["id"])]


def test_an_operator_never_registers_themselves_and_never_reads(client, tokens, services):
    child_id, child_ins = create_patient_born(client, tokens, 28, years_ago(10))
    document_id, _ = publish_document(client, tokens.professional(OTHER_DOCTOR), child_id)
    operator = _operator(tokens, "ops-7")
    themselves = _register(
        client, operator, child_id, {"system": "urn:vault:caregiver", "value": "ops-7"}
    )
    assert themselves.status_code == 422, themselves.text
    assert not sees(client, tokens.caregiver("ops-7"), document_id)
    everything = Tokens._headers(tokens.issuer.mint("operator", "ops-7", scope="system/*.cruds"))
    assert (
        client.get(f"/fhir/DocumentReference/{document_id}", headers=everything).status_code == 404
    )
    assert client.get(policy_url(child_id), headers=everything).status_code == 404
    assert client.get(f"/fhir/AuditEvent?patient={child_id}", headers=everything).status_code == 404
    assert child_ins


def test_a_representatives_refusals_are_recorded_in_their_own_name_too(client, tokens, services):
    child_id, _ = create_patient_born(client, tokens, 29, years_ago(15))
    confidential, _ = publish_document(
        client,
        tokens.professional(OTHER_DOCTOR),
        child_id,
        labels=("INVISIBLE_REPRESENTANTS_LEGAUX",),
    )
    parent_ins = ins(30)
    registered = _register(
        client, _operator(tokens), child_id, {"system": INS, "value": parent_ins}
    )
    assert registered.status_code == 201, registered.text
    assert not sees(client, tokens.patient(parent_ins), confidential)
    (refusal,) = [
        e
        for e in audit_entries(services, child_id)
        if e.resource_id == confidential and e.outcome == "denied"
    ]
    assert refusal.actor_role == "legal-representative"
    assert refusal.on_behalf_of == child_id
    assert refusal.detail["representation"] == registered.json()["id"]
