"""E-mail notifications end to end, against a real SMTP server on loopback: the address is
confirmed by a link before any other e-mail goes to it; what arrives is French, from the
templates, and carries no health data; one-click opt-out (RFC 8058) works."""

from __future__ import annotations

import base64

from sqlalchemy import select

from tests.access.policy_support import add_professional, audit_entries, declare_emergency
from tests.factories import DOCTOR, OTHER_DOCTOR, create_patient, document_reference
from tests.notifications.conftest import (
    ADDRESS,
    confirmed_address,
    prefs_url,
    token_in,
)
from vault.models import NotificationContact, NotificationEmail
from vault.notifications import templates

SECRET_TITLE = "Sérologie VIH positive"
SECRET_CONTENT = b"%PDF-1.7 resultat: charge virale 12000 copies/mL"


def _publish_secret(client, tokens, patient_id: str) -> dict:
    resource = document_reference({"reference": f"Patient/{patient_id}"}, SECRET_CONTENT)
    resource["content"][0]["attachment"]["title"] = SECRET_TITLE
    resource["description"] = SECRET_TITLE
    response = client.post(
        "/fhir/DocumentReference", json=resource, headers=tokens.professional(DOCTOR)
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_emails_arrive_in_french_and_contain_no_health_data(
    client, tokens, services, smtp, emails, outbox
):
    patient_id, ins_value = create_patient(client, tokens, seed=41)
    headers = tokens.patient(ins_value)
    confirmed_address(client, headers, patient_id, emails, smtp)
    assert add_professional(
        client, headers, patient_id, "/care-team", OTHER_DOCTOR
    ).status_code in (200, 201)

    document = _publish_secret(client, tokens, patient_id)
    read = client.get(
        f"/fhir/DocumentReference/{document['id']}", headers=tokens.professional(OTHER_DOCTOR)
    )
    assert read.status_code == 200
    assert (
        declare_emergency(client, tokens.professional("810001111111"), patient_id).status_code
        == 201
    )
    client.get(
        f"/fhir/DocumentReference?patient={patient_id}",
        headers=tokens.professional("810001111111"),
    )

    outbox.run_once()
    stats = emails.run_once()
    assert stats.sent >= 3

    messages = smtp.mailbox.messages()[1:]
    subjects = {message["Subject"] for message in messages}
    assert templates.TEMPLATES["new-document"].subject in subjects
    assert templates.TEMPLATES["new-reader"].subject in subjects
    assert templates.TEMPLATES["emergency-access"].subject in subjects
    forbidden = [
        SECRET_TITLE,
        SECRET_CONTENT.decode(),
        "charge virale",
        "VIH",
        ins_value,
        DOCTOR,
        OTHER_DOCTOR,
        "810001111111",
        document["id"],
        base64.b64encode(SECRET_CONTENT).decode(),
    ]
    for raw, message in zip(smtp.mailbox.raw(), smtp.mailbox.messages(), strict=True):
        text = message.get_content() + "".join(f"{k}: {v}\n" for k, v in message.items())
        decoded = raw.decode("utf-8", "replace")
        for needle in forbidden:
            assert needle not in text
            assert needle not in decoded
        assert message["To"] == ADDRESS
        assert message["Content-Language"] == "fr"
    for message in messages:
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Unsubscribe"].startswith("<http://testserver/courriel/desinscription?")
        assert "/courriel/desinscription?" in message.get_content()


def test_nothing_but_the_link_goes_to_an_unconfirmed_address(
    client, tokens, services, smtp, emails, outbox
):
    patient_id, ins_value = create_patient(client, tokens, seed=42)
    headers = tokens.patient(ins_value)
    response = client.put(prefs_url("me", "/address"), json={"address": ADDRESS}, headers=headers)
    assert response.status_code == 202
    assert response.json() == {
        "address": ADDRESS,
        "confirmed": False,
        "events": list(templates.DEFAULT_EVENTS),
        "availableEvents": list(templates.EVENT_KINDS),
    }
    _publish_secret(client, tokens, patient_id)
    outbox.run_once()
    assert emails.run_once().sent == 1
    (only,) = smtp.mailbox.messages()
    assert only["Subject"] == templates.CONFIRMATION_TEMPLATE.subject
    assert "List-Unsubscribe" not in only
    # Following the link later does not bring back what was not sent.
    assert (
        client.post(f"/api/notifications/confirm?token={token_in(only.get_content())}").status_code
        == 200
    )
    assert emails.run_once().sent == 0
    assert client.get(prefs_url("me"), headers=headers).json()["confirmed"] is True


def test_a_confirmation_link_works_once_and_only_with_post(client, tokens, smtp, emails):
    patient_id, ins_value = create_patient(client, tokens, seed=43)
    client.put(
        prefs_url(patient_id, "/address"),
        json={"address": ADDRESS},
        headers=tokens.patient(ins_value),
    )
    emails.run_once()
    token = token_in(smtp.mailbox.messages()[0].get_content())
    page = client.get(f"/api/notifications/confirm?token={token}")
    # A mail scanner opening the link confirms nothing: the page only offers a button.
    assert page.status_code == 200
    assert 'method="post"' in page.text
    assert (
        client.get(prefs_url(patient_id), headers=tokens.patient(ins_value)).json()["confirmed"]
        is False
    )
    assert client.post(f"/api/notifications/confirm?token={token}").status_code == 200
    assert client.post(f"/api/notifications/confirm?token={token}").status_code == 404
    assert client.post("/api/notifications/confirm?token=" + "A" * 43).status_code == 404


def test_an_expired_confirmation_link_is_refused(client, tokens, services, smtp, emails):
    patient_id, ins_value = create_patient(client, tokens, seed=44)
    client.put(
        prefs_url(patient_id, "/address"),
        json={"address": ADDRESS},
        headers=tokens.patient(ins_value),
    )
    emails.run_once()
    token = token_in(smtp.mailbox.messages()[0].get_content())
    with services.session_factory() as session, session.begin():
        contact = session.get(NotificationContact, patient_id)
        contact.confirm_expires_at = contact.created_at
    assert client.post(f"/api/notifications/confirm?token={token}").status_code == 404


def test_one_click_unsubscribe_stops_every_email(client, tokens, services, smtp, emails, outbox):
    patient_id, ins_value = create_patient(client, tokens, seed=45)
    headers = tokens.patient(ins_value)
    confirmed_address(client, headers, patient_id, emails, smtp)
    _publish_secret(client, tokens, patient_id)
    outbox.run_once()
    emails.run_once()
    message = smtp.mailbox.messages()[-1]
    link = message["List-Unsubscribe"].strip("<>")
    path = link.removeprefix("http://testserver")
    # RFC 8058: the mail client POSTs this exact body to the header's URL, with no cookie.
    response = client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert client.get(prefs_url(patient_id), headers=headers).json()["events"] == []
    sent = len(smtp.mailbox.received)
    _publish_secret(client, tokens, patient_id)
    outbox.run_once()
    assert emails.run_once().sent == 0
    assert len(smtp.mailbox.received) == sent
    # A forged or altered link changes nothing.
    assert client.post(path[:-4] + "0000").status_code == 404
    actions = [entry.detail.get("notifications") for entry in audit_entries(services, patient_id)]
    assert "confirmed" in actions
    assert "unsubscribed" in actions


def test_choosing_events_filters_what_is_sent(client, tokens, services, smtp, emails, outbox):
    patient_id, ins_value = create_patient(client, tokens, seed=46)
    headers = tokens.patient(ins_value)
    confirmed_address(client, headers, patient_id, emails, smtp)
    chosen = client.put(
        prefs_url("me", "/events"), json={"events": ["emergency-access"]}, headers=headers
    )
    assert chosen.status_code == 200
    assert chosen.json()["events"] == ["emergency-access"]
    _publish_secret(client, tokens, patient_id)
    outbox.run_once()
    assert emails.run_once().sent == 0
    assert (
        declare_emergency(client, tokens.professional(OTHER_DOCTOR), patient_id).status_code == 201
    )
    client.get(
        f"/fhir/DocumentReference?patient={patient_id}", headers=tokens.professional(OTHER_DOCTOR)
    )
    outbox.run_once()
    assert emails.run_once().sent == 1
    assert smtp.mailbox.messages()[-1]["Subject"] == templates.TEMPLATES["emergency-access"].subject


def test_unknown_events_and_bad_addresses_are_refused_with_an_operation_outcome(client, tokens):
    patient_id, ins_value = create_patient(client, tokens, seed=47)
    headers = tokens.patient(ins_value)
    bad = client.put(
        prefs_url(patient_id, "/events"), json={"events": ["diagnosis"]}, headers=headers
    )
    assert bad.status_code == 422
    assert bad.json()["resourceType"] == "OperationOutcome"
    for address in ("not-an-address", "a@b@c.org", "x@example.org\r\nBcc: spy@example.org"):
        refused = client.put(
            prefs_url(patient_id, "/address"), json={"address": address}, headers=headers
        )
        assert refused.status_code in (400, 422), address
        assert refused.json()["resourceType"] == "OperationOutcome"
    assert client.get(prefs_url(patient_id), headers=headers).json()["address"] is None


def test_nobody_else_reads_or_changes_a_patients_email_preferences(client, tokens):
    patient_id, ins_value = create_patient(client, tokens, seed=48)
    _, other_ins = create_patient(client, tokens, seed=49)
    client.put(
        prefs_url(patient_id, "/address"),
        json={"address": ADDRESS},
        headers=tokens.patient(ins_value),
    )
    for headers in (
        tokens.patient(other_ins),
        tokens.professional(DOCTOR),
        tokens.caregiver("caregiver-9"),
        tokens.operator(),
    ):
        assert client.get(prefs_url(patient_id), headers=headers).status_code == 404
        assert (
            client.put(
                prefs_url(patient_id, "/address"),
                json={"address": "spy@example.org"},
                headers=headers,
            ).status_code
            == 404
        )
        assert (
            client.put(
                prefs_url(patient_id, "/events"), json={"events": []}, headers=headers
            ).status_code
            == 404
        )
        assert client.delete(prefs_url(patient_id, "/address"), headers=headers).status_code == 404
    assert (
        client.get(prefs_url(patient_id), headers=tokens.patient(ins_value)).json()["address"]
        == ADDRESS
    )


def test_the_address_is_stored_encrypted(client, tokens, services):
    patient_id, ins_value = create_patient(client, tokens, seed=50)
    client.put(
        prefs_url(patient_id, "/address"),
        json={"address": ADDRESS},
        headers=tokens.patient(ins_value),
    )
    with services.engine.connect() as connection:
        dump = b"".join(
            repr(tuple(row)).encode()
            for table in ("notification_contacts", "notification_emails")
            for row in connection.exec_driver_sql(f"SELECT * FROM {table}")
        )
    assert ADDRESS.encode() not in dump
    assert b"claire.martin" not in dump


def test_removing_the_address_cancels_what_was_queued(
    client, tokens, services, smtp, emails, outbox
):
    patient_id, ins_value = create_patient(client, tokens, seed=51)
    headers = tokens.patient(ins_value)
    confirmed_address(client, headers, patient_id, emails, smtp)
    _publish_secret(client, tokens, patient_id)
    outbox.run_once()
    assert client.delete(prefs_url(patient_id, "/address"), headers=headers).status_code == 204
    stats = emails.run_once()
    assert (stats.sent, stats.skipped) == (0, 1)
    with services.session_factory() as session:
        statuses = set(session.scalars(select(NotificationEmail.status)))
    assert statuses == {"sent", "skipped"}


def test_the_patient_is_told_by_email_that_their_export_is_ready(
    client, tokens, services, smtp, emails, outbox
):
    from vault.services.exports import export_worker  # noqa: PLC0415

    patient_id, ins_value = create_patient(client, tokens, seed=52)
    headers = tokens.patient(ins_value)
    confirmed_address(client, headers, patient_id, emails, smtp)
    assert client.post("/api/patients/me/exports", headers=headers).status_code == 202
    assert export_worker(services).run_once().built == 1
    outbox.run_once()
    assert emails.run_once().sent == 1
    message = smtp.mailbox.messages()[-1]
    assert message["Subject"] == "Votre export est prêt"
    assert "export" in message.get_content()


def test_a_record_asks_for_only_a_few_confirmations_a_day(client, tokens):
    patient_id, ins_value = create_patient(client, tokens, seed=53)
    headers = tokens.patient(ins_value)
    for number in range(5):
        response = client.put(
            prefs_url(patient_id, "/address"),
            json={"address": f"someone{number}@example.org"},
            headers=headers,
        )
        assert response.status_code == 202
    refused = client.put(
        prefs_url(patient_id, "/address"), json={"address": "stranger@example.org"}, headers=headers
    )
    assert refused.status_code == 429
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert (
        client.get(prefs_url(patient_id), headers=headers).json()["address"]
        == "someone4@example.org"
    )
