"""The patient's page closes the space (keeping it, or asking for its deletion), shows it
closed at the next sign-in, asks for its deletion, reopens it; a person without a space
opposes its creation and withdraws the opposition. Through the records services, so the
same access decisions and audit entries as the API; refused in French for anyone else, or
without the form's CSRF token."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from html import unescape

from sqlalchemy import select

from tests.access.policy_support import audit_entries
from tests.factories import ins, publish
from tests.web.support import browser, csrf_of, follow, sign_in_as, sign_in_demo
from vault.api.app import create_app
from vault.identity.principal import Role
from vault.models import AuditEntry, Opposition, RecordLifecycle
from vault.models.base import as_utc
from vault.services.records import purger
from vault.web import demo


def signed_in_patient(web, services) -> str:
    seeded = demo.seed(services)
    sign_in_demo(web, "patient")
    return seeded.patient_id


def close(web, pid: str, *, delete_now: bool = False):
    choice = "oui" if delete_now else "non"
    confirm = web.get(f"/dossiers/{pid}/fermeture/confirmer?suppression={choice}")
    assert confirm.status_code == 200, confirm.text
    return web.post(
        f"/dossiers/{pid}/fermeture",
        data={"csrf_token": csrf_of(confirm.text), "suppression": choice},
    )


def stages(services, pid: str, permission: str) -> list[str]:
    return [
        str(entry.detail.get("stage"))
        for entry in audit_entries(services, pid)
        if entry.detail.get("permission") == permission and entry.outcome == "success"
    ]


def test_the_patient_closes_signs_in_again_and_reopens(web, services, settings):
    pid = signed_in_patient(web, services)
    documents = web.get(f"/dossiers/{pid}/documents")
    assert f'href="/dossiers/{pid}/fermeture"' in documents.text
    page = web.get(f"/dossiers/{pid}/fermeture")
    assert page.status_code == 200
    text = unescape(page.text)
    # The consequences and the settings' terms, before anything is done.
    assert "Plus personne ne peut consulter le dossier" in text
    assert "pendant 10 ans" in text
    assert f"au plus tard {settings.early_deletion_days} jours après votre demande" in text
    confirm = web.get(f"/dossiers/{pid}/fermeture/confirmer?suppression=non")
    assert "Rien n'est fait tant que vous n'avez pas confirmé." in unescape(confirm.text)
    # Nothing is closed by looking at the confirmation step.
    assert stages(services, pid, "record:close") == []

    closed = close(web, pid)
    assert closed.status_code == 303
    shown = follow(web, closed)
    text = unescape(shown.text)
    assert "L'espace est fermé." in text
    assert "Cet espace a été fermé le" in text
    assert "conservés, chiffrés, jusqu'au" in text
    assert "Rouvrir l'espace" in text
    assert "Demander la suppression maintenant" in text
    # No menu of pages that a closed space refuses.
    assert f'href="/dossiers/{pid}/historique"' not in shown.text
    assert stages(services, pid, "record:close") == ["closed", "archived"]

    # A new sign-in lands on the page that says the space is closed.
    for again in browser(create_app(settings, services)):
        sign_in_demo(again, "patient")
        home = again.get("/")
        assert home.headers["location"] == f"/dossiers/{pid}/fermeture"
        assert again.get(f"/dossiers/{pid}/documents").headers["location"] == (
            f"/dossiers/{pid}/fermeture"
        )
        page = follow(again, home)
        assert "Cet espace est fermé" in unescape(page.text)

        reopened = again.post(
            f"/dossiers/{pid}/reouverture", data={"csrf_token": csrf_of(page.text)}
        )
        assert reopened.status_code == 303
        listed = follow(again, reopened)
        assert listed.status_code == 200
        assert "L'espace est rouvert" in unescape(listed.text)
        assert 'data-testid="document-row"' in listed.text
    assert stages(services, pid, "record:reopen") == ["reopened"]
    # Once reopened, the history shows the closure and the reopening.
    history = unescape(web.get(f"/dossiers/{pid}/historique").text)
    assert "A fermé l'espace" in history
    assert "A rouvert l'espace" in history


def test_the_patient_closes_asking_for_deletion_and_the_purge_deletes_it(web, services, settings):
    pid = signed_in_patient(web, services)
    confirm = web.get(f"/dossiers/{pid}/fermeture/confirmer?suppression=oui")
    text = unescape(confirm.text)
    assert "supprimés définitivement au plus tard le" in text
    assert "Fermer mon espace et demander la suppression" in text
    shown = follow(web, close(web, pid, delete_now=True))
    text = unescape(shown.text)
    assert "La suppression a été demandée le" in text
    assert "Demander la suppression maintenant" not in text
    assert "La demande de suppression est annulée." in text
    assert stages(services, pid, "record:delete") == ["requested"]
    # The confirmation step of a deletion already asked for leads back to the page.
    assert web.get(f"/dossiers/{pid}/fermeture/suppression").status_code == 303

    # Once the purge has deleted it, the next sign-in offers a new, empty space.
    with services.session_factory() as session:
        due = as_utc(session.get(RecordLifecycle, pid).deletion_due_at)
    assert purger(services).run(now=due + timedelta(seconds=1)).shredded == 1
    for again in browser(create_app(settings, services)):
        sign_in_demo(again, "patient")
        assert again.get("/").headers["location"] == "/bienvenue"
        assert again.get(f"/dossiers/{pid}/fermeture").status_code == 404


def test_a_closed_space_asks_for_deletion_after_a_confirmation_step(web, services):
    pid = signed_in_patient(web, services)
    follow(web, close(web, pid))
    confirm = web.get(f"/dossiers/{pid}/fermeture/suppression")
    assert confirm.status_code == 200
    assert "ne peut pas être annulée" in unescape(confirm.text)
    asked = web.post(
        f"/dossiers/{pid}/fermeture/suppression", data={"csrf_token": csrf_of(confirm.text)}
    )
    assert asked.status_code == 303
    assert "La demande de suppression est enregistrée." in unescape(follow(web, asked).text)
    assert stages(services, pid, "record:delete") == ["requested"]


def test_refusals_are_in_french_and_change_nothing(web, services, settings):
    pid = signed_in_patient(web, services)
    page = web.get(f"/dossiers/{pid}/fermeture")
    token = csrf_of(page.text)
    # Without the form's token: refused, nothing closed.
    forged = web.post(f"/dossiers/{pid}/fermeture", data={"suppression": "oui"})
    assert forged.status_code == 403
    assert "Ce formulaire a expiré" in unescape(forged.text)
    wrong = web.post(
        f"/dossiers/{pid}/fermeture", data={"csrf_token": "not-it", "suppression": "oui"}
    )
    assert wrong.status_code == 403
    # Asking for deletion or reopening an open space: refused, saying why.
    early = web.post(f"/dossiers/{pid}/fermeture/suppression", data={"csrf_token": token})
    assert early.status_code == 409
    assert "Seul un espace fermé peut être supprimé" in unescape(early.text)
    reopen = web.post(f"/dossiers/{pid}/reouverture", data={"csrf_token": token})
    assert reopen.status_code == 409
    assert "il n'y a rien à rouvrir" in unescape(reopen.text)
    assert stages(services, pid, "record:close") == []
    assert "Traceback" not in early.text + reopen.text

    # Someone else's space: as absent as anything else, and still open.
    for stranger in browser(create_app(settings, services)):
        sign_in_as(stranger, demo.principal(Role.PATIENT, ins(77)), "Autre Personne")
        assert stranger.get(f"/dossiers/{pid}/fermeture").status_code == 404
        other = stranger.get("/bienvenue")
        attempt = stranger.post(
            f"/dossiers/{pid}/fermeture",
            data={"csrf_token": csrf_of(other.text), "suppression": "oui"},
        )
        assert attempt.status_code == 404
        assert "Cette page n'existe pas, ou vous n'y avez pas accès." in unescape(attempt.text)
    # A caregiver under a delegation: no closure either.
    for helper in browser(create_app(settings, services)):
        sign_in_demo(helper, "caregiver")
        assert f"/dossiers/{pid}/fermeture" not in helper.get(f"/dossiers/{pid}/documents").text
        assert helper.get(f"/dossiers/{pid}/fermeture").status_code == 404
    assert stages(services, pid, "record:close") == []
    assert 'data-testid="document-row"' in web.get(f"/dossiers/{pid}/documents").text


def test_a_minors_legal_representative_closes_and_reopens(web, services, settings, client, tokens):
    child_ins = ins(94)
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
        json={"representative": {"system": "urn:vault:caregiver", "value": "parent-3"}},
        headers=operator,
    )
    assert registered.status_code == 201, registered.text
    parent = dataclasses.replace(
        demo.principal(Role.CAREGIVER, "parent-3"), issuer=services.issuer.issuer
    )
    sign_in_as(web, parent, "Marie Petit")
    assert "Fermer son espace" in web.get(f"/dossiers/{child}/documents").text
    shown = follow(web, close(web, child))
    assert "Cet espace est fermé" in unescape(shown.text)
    # The closed record leaves the list of people, and is listed apart, to reopen it.
    people = web.get("/")
    assert f'href="/dossiers/{child}/documents"' not in people.text
    assert f'href="/dossiers/{child}/fermeture"' in people.text
    assert "Espaces fermés que vous représentez" in unescape(people.text)
    reopened = web.post(f"/dossiers/{child}/reouverture", data={"csrf_token": csrf_of(shown.text)})
    assert reopened.status_code == 303
    assert stages(services, child, "record:reopen") == ["reopened"]
    assert f'href="/dossiers/{child}/documents"' in web.get("/").text
    with services.session_factory() as session:
        representative = session.scalars(
            select(AuditEntry).where(AuditEntry.patient_id == child)
        ).all()
    # In the representative's own name.
    acts = {(entry.actor_role, entry.detail.get("stage")) for entry in representative}
    assert {("legal-representative", "closed"), ("legal-representative", "reopened")} <= acts, acts


def test_a_person_without_a_space_opposes_and_withdraws(web, services, settings):
    person = demo.principal(Role.PATIENT, ins(78))
    sign_in_as(web, person, "Paul Durand")
    assert web.get("/").headers["location"] == "/bienvenue"
    welcome = web.get("/bienvenue")
    assert 'href="/bienvenue/opposition"' in welcome.text
    page = web.get("/bienvenue/opposition")
    assert page.status_code == 200
    assert "ne seront pas conservés" in unescape(page.text)

    # The confirmation box, checked or the form is shown again saying so.
    unchecked = web.post("/bienvenue/opposition", data={"csrf_token": csrf_of(page.text)})
    assert unchecked.status_code == 422
    assert "Cochez la case pour confirmer" in unescape(unchecked.text)
    assert 'aria-invalid="true"' in unchecked.text
    forged = web.post("/bienvenue/opposition", data={"confirme": "oui"})
    assert forged.status_code == 403
    with services.session_factory() as session:
        assert session.scalars(select(Opposition)).all() == []

    opposed = web.post(
        "/bienvenue/opposition", data={"csrf_token": csrf_of(page.text), "confirme": "oui"}
    )
    assert opposed.status_code == 303
    shown = follow(web, opposed)
    assert "Votre opposition est enregistrée." in unescape(shown.text)
    assert "Vous vous êtes opposé à la création de votre espace le" in unescape(shown.text)
    with services.session_factory() as session:
        assert len(session.scalars(select(Opposition)).all()) == 1
    # The next sign-in lands on the opposition, and opening a space is refused.
    assert web.get("/").headers["location"] == "/bienvenue/opposition"
    assert web.get("/bienvenue").headers["location"] == "/bienvenue/opposition"
    refused = web.post("/bienvenue", data={"csrf_token": csrf_of(shown.text)})
    assert refused.status_code == 409
    assert "Traceback" not in refused.text

    withdrawn = web.post("/bienvenue/opposition/retrait", data={"csrf_token": csrf_of(shown.text)})
    assert withdrawn.status_code == 303
    assert "Votre opposition est retirée." in unescape(follow(web, withdrawn).text)
    with services.session_factory() as session:
        assert session.scalars(select(Opposition)).all() == []
        entries = session.scalars(select(AuditEntry)).all()
    stages_seen = [
        entry.detail.get("stage")
        for entry in entries
        if entry.detail.get("permission") == "record:oppose"
    ]
    assert stages_seen == ["opposed", "withdrawn"]
    # No INS in the log.
    assert all(ins(78) not in str(entry.detail) for entry in entries)
    assert web.get("/").headers["location"] == "/bienvenue"


def test_someone_with_a_space_is_offered_no_opposition(web, services):
    pid = signed_in_patient(web, services)
    assert "/bienvenue/opposition" not in follow(web, web.get("/")).text
    assert web.get("/bienvenue/opposition").headers["location"] == "/"
    page = web.get(f"/dossiers/{pid}/fermeture")
    posted = web.post(
        "/bienvenue/opposition", data={"csrf_token": csrf_of(page.text), "confirme": "oui"}
    )
    assert posted.status_code == 303
    with services.session_factory() as session:
        assert session.scalars(select(Opposition)).all() == []
