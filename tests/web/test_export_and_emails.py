"""The patient's page asks for an export, follows it and downloads the archive; and sets
the e-mail preferences (an address confirmed by a link, the events, stopping them all),
through the same services, access decisions and audit as the API, in French."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import zipfile
from html import unescape

from sqlalchemy import select

from tests.access.policy_support import audit_entries
from tests.factories import ins, publish
from tests.notifications.conftest import email_worker, plain_settings, smtp, token_in
from tests.web.support import browser, csrf_of, follow, sign_in_as, sign_in_demo
from vault.api.app import create_app
from vault.audit.delivery import DeliveryWorker, LogSender
from vault.identity.principal import Role
from vault.models import AuditEntry, NotificationEmail
from vault.notifications import templates
from vault.notifications.mail import SmtpMailer
from vault.notifications.outbox import enqueue_notifications
from vault.services.exports import export_worker
from vault.web import demo
from vault.web.signin import DEMO_PATIENT

__all__ = ["smtp"]

ADDRESS = "camille.martin@example.org"


def signed_in_patient(web, services) -> str:
    seeded = demo.seed(services)
    sign_in_demo(web, "patient")
    return seeded.patient_id


def statuses(html: str) -> list[str]:
    found = re.findall(r'data-testid="export-status"><strong>([^<]+)</strong>', html)
    return [unescape(text) for text in found]


def ask_export(web, pid: str):
    form = web.get(f"/dossiers/{pid}/export")
    assert form.status_code == 200
    return web.post(f"/dossiers/{pid}/export", data={"csrf_token": csrf_of(form.text)})


def test_the_patient_asks_follows_and_downloads_an_export_from_the_page(web, services):
    pid = signed_in_patient(web, services)
    page = web.get(f"/dossiers/{pid}/documents")
    assert f'href="/dossiers/{pid}/export"' in page.text
    first = web.get(f"/dossiers/{pid}/export")
    assert "Vous n'avez demandé aucun export récemment." in unescape(first.text)

    asked = ask_export(web, pid)
    assert asked.status_code == 303
    shown = follow(web, asked)
    assert "Votre demande d'export est enregistrée." in unescape(shown.text)
    assert statuses(shown.text) == ["En attente"]
    assert 'data-refresh="4"' in shown.text
    assert re.search(r'<progress max="100" value="0"', shown.text)

    # One at a time: the second request is refused in French, and nothing is queued.
    again = ask_export(web, pid)
    assert again.status_code == 409
    assert "Un export de ce dossier est déjà en cours de préparation." in unescape(again.text)
    assert statuses(again.text) == ["En attente"]

    assert export_worker(services).run_once().built == 1
    ready = web.get(f"/dossiers/{pid}/export")
    assert statuses(ready.text) == ["Prêt"]
    assert "data-refresh" not in ready.text
    assert re.search(r"4 document\(s\), [\d,]+ Ko\.", unescape(ready.text))
    link = re.search(r'data-testid="export-download" href="([^"]+)"', ready.text).group(1)
    download = web.get(link)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in download.headers["content-security-policy"]
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    bundle = json.loads(archive.read("bundle.json"))
    assert bundle["type"] == "collection"
    assert len([n for n in archive.namelist() if n.startswith("documents/")]) == 4

    stages = [
        entry.detail.get("stage")
        for entry in audit_entries(services, pid)
        if entry.detail.get("permission") == "record:export"
    ]
    assert stages == ["requested", "built", "downloaded"]


def export_entries(services, pid: str) -> list[tuple[str, str | None]]:
    return [
        (entry.outcome, entry.detail.get("stage"))
        for entry in audit_entries(services, pid)
        if entry.detail.get("permission") == "record:export"
    ]


def test_refreshing_the_export_page_while_it_is_built_adds_nothing_to_the_history(web, services):
    """The page asks again every 4 s while the archive is built: the patient's history
    shows one line for the request and one for the download, none for the refreshes;
    the archive's content (health data) is still on record, read by read."""
    pid = signed_in_patient(web, services)
    assert ask_export(web, pid).status_code == 303
    before = len(audit_entries(services, pid))
    for _ in range(5):
        refreshed = web.get(f"/dossiers/{pid}/export")
        assert statuses(refreshed.text) == ["En attente"]
        assert 'data-refresh="4"' in refreshed.text
    assert len(audit_entries(services, pid)) == before

    assert export_worker(services).run_once().built == 1
    ready = web.get(f"/dossiers/{pid}/export")
    link = re.search(r'data-testid="export-download" href="([^"]+)"', ready.text).group(1)
    assert web.get(link).status_code == 200
    web.get(f"/dossiers/{pid}/export")
    assert export_entries(services, pid) == [
        ("success", "requested"),
        ("success", "built"),
        ("success", "downloaded"),
    ]
    # The build read every document's content as the patient, and each read is there.
    assert any(
        entry.detail.get("permission") == "document:content"
        for entry in audit_entries(services, pid)
    )


def test_a_refused_look_at_the_exports_is_still_on_record(web, services):
    """Only a granted look at one's own jobs goes unrecorded: a caregiver under a delegation,
    who may not export, is refused, and the refusal is in the patient's history."""
    seeded = demo.seed(services)
    sign_in_demo(web, "caregiver")
    assert web.get(f"/dossiers/{seeded.patient_id}/export").status_code == 404
    assert export_entries(services, seeded.patient_id) == [("denied", "listed")]


def test_a_refused_export_request_says_why_in_french(web, services, settings):
    pid = signed_in_patient(web, services)
    worker = export_worker(services)
    for _ in range(settings.export_daily_limit):
        assert ask_export(web, pid).status_code == 303
        worker.run_once()
    refused = ask_export(web, pid)
    assert refused.status_code == 429
    assert (
        f"Vous avez déjà demandé {settings.export_daily_limit} exports de ce dossier"
        in unescape(refused.text)
    )
    # The refusal is on record, as the API's is (a failed change, in the person's name).
    with services.session_factory() as session:
        details = [entry.detail for entry in session.scalars(select(AuditEntry)).all()]
    assert {"error": "FormErrors", "status": "429"} in details, [
        d for d in details if "error" in str(d)
    ]


def test_an_expired_or_unknown_export_is_explained_not_served(web, services, settings):
    pid = signed_in_patient(web, services)
    ask_export(web, pid)
    export_worker(services).run_once()
    link = re.search(
        r'data-testid="export-download" href="([^"]+)"', web.get(f"/dossiers/{pid}/export").text
    ).group(1)
    export_id = link.split("/")[-2]
    services.exports.path_of(export_id).unlink()
    gone = web.get(link)
    assert gone.status_code == 410
    assert "Cet export a expiré ou n'est plus disponible." in unescape(gone.text)
    unknown = web.get(f"/dossiers/{pid}/export/not-an-export/archive")
    assert unknown.status_code == 404


def test_only_who_asked_sees_and_downloads_an_export(web, services, settings, client, tokens):
    """A minor's legal representative exports from the page; the job is theirs alone, and
    a caregiver under a delegation has no export page."""
    child_ins = ins(93)
    created = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": child_ins}],
            "name": [{"family": "Petit", "given": ["Léo"]}],
            "birthDate": "2018-05-01",
        },
        headers=tokens.professional(demo.DOCTOR.idnps),
    )
    child = created.headers["Location"].split("/Patient/")[1].split("/")[0]
    publish(client, tokens.professional(demo.DOCTOR.idnps), child)
    operator = {
        "Authorization": "Bearer " + tokens.issuer.mint("operator", "ops", scope="system/Consent.u")
    }
    registered = client.post(
        f"/api/patients/{child}/policy/representatives",
        json={"representative": {"system": "urn:vault:caregiver", "value": "parent-2"}},
        headers=operator,
    )
    assert registered.status_code == 201, registered.text
    parent = dataclasses.replace(
        demo.principal(Role.CAREGIVER, "parent-2"), issuer=services.issuer.issuer
    )
    sign_in_as(web, parent, "Marie Petit")
    assert f'href="/dossiers/{child}/export"' in web.get(f"/dossiers/{child}/documents").text
    assert ask_export(web, child).status_code == 303
    assert export_worker(services).run_once().built == 1
    page = web.get(f"/dossiers/{child}/export")
    link = re.search(r'data-testid="export-download" href="([^"]+)"', page.text).group(1)
    assert web.get(link).status_code == 200

    # The child's own record holder (here, signed in as the patient) sees none of it.
    for other in browser(create_app(settings, services)):
        holder = demo.principal(Role.PATIENT, child_ins)
        sign_in_as(other, holder, "Léo Petit")
        assert statuses(other.get(f"/dossiers/{child}/export").text) == []
        assert other.get(link).status_code == 404

    # Someone with no standing on the record: as absent as anything else.
    for stranger in browser(create_app(settings, services)):
        sign_in_demo(stranger, "caregiver")
        assert stranger.get(f"/dossiers/{child}/export").status_code == 404
        assert stranger.get(link).status_code == 404


def test_a_caregiver_under_a_delegation_has_no_export(web, services):
    seeded = demo.seed(services)
    sign_in_demo(web, "caregiver")
    page = web.get(f"/dossiers/{seeded.patient_id}/documents")
    assert page.status_code == 200
    assert "/export" not in page.text
    assert web.get(f"/dossiers/{seeded.patient_id}/export").status_code == 404
    assert web.get(f"/dossiers/{seeded.patient_id}/notifications/courriel").status_code == 404


def emails_page(web, pid: str):
    page = web.get(f"/dossiers/{pid}/notifications/courriel")
    assert page.status_code == 200
    return page


def post_form(web, pid: str, action: str, **fields):
    page = emails_page(web, pid)
    return web.post(
        f"/dossiers/{pid}/notifications/courriel/{action}",
        data={"csrf_token": csrf_of(page.text), **fields},
    )


def test_the_address_is_given_on_the_page_and_confirmed_by_the_link(web, services, smtp):
    pid = signed_in_patient(web, services)
    notifications = web.get(f"/dossiers/{pid}/notifications")
    assert "Recevoir ces nouvelles par e-mail" in notifications.text
    page = emails_page(web, pid)
    assert "Vous n'avez pas donné d'adresse" in unescape(page.text)

    empty = post_form(web, pid, "adresse", adresse="  ")
    assert empty.status_code == 422
    assert "Saisissez votre adresse e-mail." in unescape(empty.text)
    wrong = post_form(web, pid, "adresse", adresse="camille@")
    assert wrong.status_code == 422
    assert "Cette adresse e-mail n'est pas valide" in unescape(wrong.text)
    assert 'aria-invalid="true"' in wrong.text
    assert 'value="camille@"' in wrong.text

    given = post_form(web, pid, "adresse", adresse=ADDRESS)
    assert given.status_code == 303
    shown = follow(web, given)
    assert "Un lien de confirmation a été envoyé à cette adresse." in unescape(shown.text)
    assert ADDRESS in shown.text
    assert "à confirmer" in shown.text

    # The link arrives at the (real, loopback) SMTP server and confirms the address.
    worker = email_worker(services, SmtpMailer(plain_settings(smtp)))
    assert worker.run_once().sent == 1
    (message,) = smtp.mailbox.messages()
    assert message["Subject"] == templates.CONFIRMATION_TEMPLATE.subject
    link = re.search(r"https?://\S+/courriel/confirmer\?token=\S+", message.get_content())
    assert link is not None, message.get_content()
    path = "/" + link.group(0).split("/", 3)[3]
    for anonymous in browser(web.app):
        # Opening the link (as a mail scanner would) only shows a button, no session needed.
        opened = anonymous.get(path)
        assert opened.status_code == 200
        assert "Confirmez que vous souhaitez recevoir" in unescape(opened.text)
        assert "à confirmer" in emails_page(web, pid).text
        confirmed = anonymous.post(path)
        assert confirmed.status_code == 200
        assert "Adresse confirmée" in confirmed.text
        assert anonymous.post(path).status_code == 404
    assert "confirmée" in emails_page(web, pid).text


def test_the_opt_out_link_of_an_e_mail_works_without_signing_in(
    web, services, smtp, client, tokens
):
    pid = signed_in_patient(web, services)
    post_form(web, pid, "adresse", adresse=ADDRESS)
    worker = email_worker(services, SmtpMailer(plain_settings(smtp)))
    worker.run_once()
    token = token_in(smtp.mailbox.messages()[0].get_content())
    for anonymous in browser(web.app):
        assert anonymous.post(f"/courriel/confirmer?token={token}").status_code == 200
    # A document arrives; its e-mail carries the one-click link, header and text.
    publish(client, tokens.professional(demo.DOCTOR.idnps), pid)
    DeliveryWorker(services.session_factory, LogSender(), fan_out=enqueue_notifications).run_once()
    assert worker.run_once().sent >= 1
    message = smtp.mailbox.messages()[-1]
    link = message["List-Unsubscribe"].strip("<>")
    assert "/courriel/desinscription?" in link
    assert link in message.get_content()
    path = "/" + link.split("/", 3)[3]
    for anonymous in browser(web.app):
        opened = anonymous.get(path)
        assert opened.status_code == 200
        assert "Ne plus recevoir d'e-mails" in unescape(opened.text)
        assert services_events(services, pid) != []
        # The mail client's RFC 8058 POST, with no cookie.
        done = anonymous.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert done.status_code == 200
        assert "plus aucun e-mail ne vous sera envoyé" in unescape(done.text)
        assert anonymous.post(path[:-4] + "0000").status_code == 404
    assert services_events(services, pid) == []


def test_events_are_chosen_and_all_e_mails_stopped_from_the_page(web, services):
    pid = signed_in_patient(web, services)
    page = emails_page(web, pid)
    # Every event the API knows, in French, all chosen by default.
    for kind in templates.EVENT_KINDS:
        assert f'id="event-{kind}" name="evenements" value="{kind}" checked' in page.text
    assert "les données de mon espace sont supprimées à ma demande" in page.text

    chosen = post_form(web, pid, "evenements", evenements=["emergency-access", "export-ready"])
    assert chosen.status_code == 303
    assert "Vos choix ont été enregistrés." in unescape(follow(web, chosen).text)
    assert services_events(services, pid) == ["emergency-access", "export-ready"]

    stopped = post_form(web, pid, "arreter")
    assert "Vous ne recevrez plus d'e-mails." in unescape(follow(web, stopped).text)
    assert services_events(services, pid) == []
    assert "checked" not in emails_page(web, pid).text.split("events-title")[1]

    # Every change is decided and on record, as the API's are.
    changes = [
        entry.detail.get("notifications")
        for entry in audit_entries(services, pid)
        if entry.detail.get("permission") == "notifications:manage"
    ]
    assert changes.count("events") == 2


def services_events(services, pid: str) -> list[str]:
    with services.session_factory.begin() as session:
        actor = services.access.actor(session, demo.principal(Role.PATIENT, DEMO_PATIENT.subject))
        return list(services.notifications.view(session, actor, pid).events)


def test_the_address_is_forgotten_and_what_was_queued_for_it_is_not_sent(web, services, smtp):
    pid = signed_in_patient(web, services)
    post_form(web, pid, "adresse", adresse=ADDRESS)
    forgotten = post_form(web, pid, "oublier")
    assert "Votre adresse a été oubliée" in unescape(follow(web, forgotten).text)
    assert ADDRESS not in emails_page(web, pid).text
    worker = email_worker(services, SmtpMailer(plain_settings(smtp)))
    assert worker.run_once().sent == 0
    with services.session_factory() as session:
        assert session.query(NotificationEmail).filter_by(patient_id=pid).count() == 1
    assert smtp.mailbox.messages() == []
