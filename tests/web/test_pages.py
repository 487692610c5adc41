"""The patient's space's pages over HTTP: what a patient sees and can do, in French,
through the same access decisions and audit as the API."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select

from tests.factories import create_patient, ins, publish
from tests.web.support import browser, csrf_of, follow, sign_in_as, sign_in_demo
from vault.api.app import create_app
from vault.identity.principal import Role
from vault.models import AuditEntry
from vault.web import demo
from vault.web.i18n import TIMEZONE, long_date
from vault.web.signin import DEMO_CAREGIVER, DEMO_PATIENT


@pytest.fixture
def seeded(services):
    return demo.seed(services)


def rows(html: str) -> list[str]:
    return re.findall(r'<li data-testid="document-row">(.*?)</li>', html, re.S)


def titles(html: str) -> list[str]:
    return [re.search(r"<h2>([^<]+)", row).group(1).strip() for row in rows(html)]


def patient_home(web):
    sign_in_demo(web, "patient")
    return follow(web, web.get("/"))


def test_documents_are_listed_newest_first_with_french_labels_dates_and_authors(web, seeded):
    page = patient_home(web)
    assert page.status_code == 200
    assert titles(page.text) == [
        "Synthèse médicale",
        "Bilan sanguin",
        "Radiographie du genou droit",
        "Mes directives anticipées",
    ]
    assert "Compte rendu d&#39;examens de biologie" in page.text
    assert "Dr Claire Durand, médecin généraliste" in page.text
    assert "Ajouté par le patient" in page.text
    assert re.search(
        r"\d{1,2} (janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre) 20\d\d",
        page.text,
    )
    # Each row's open action has its own accessible name.
    names = re.findall(r'data-testid="open-document"[^>]*aria-label="([^"]+)"', page.text)
    assert len(names) == len(set(names)) == 4
    assert names[1].startswith("Ouvrir Bilan sanguin du ")


def test_documents_filter_by_category(web, seeded):
    patient_home(web)
    page = web.get(f"/dossiers/{seeded.patient_id}/documents?categorie=31")
    assert titles(page.text) == ["Radiographie du genou droit"]


def test_documents_are_paged(web, services, seeded, tokens, client):
    for _ in range(22):
        publish(client, tokens.professional(demo.DOCTOR.idnps), seeded.patient_id)
    patient_home(web)
    first = web.get(f"/dossiers/{seeded.patient_id}/documents")
    assert len(rows(first.text)) == 20
    more = re.search(r'href="\?apres=([^"]+)"', first.text)
    assert more
    second = web.get(f"/dossiers/{seeded.patient_id}/documents?apres={more.group(1)}")
    assert len(rows(second.text)) == 6


def test_new_documents_since_the_last_visit_are_marked(web, seeded, tokens, client):
    first = patient_home(web)
    # A first visit has nothing to compare with: nothing is marked.
    assert [row for row in rows(first.text) if "badge new" in row] == []
    # Sign out and back in: what arrived in between is new.
    page = web.get(f"/dossiers/{seeded.patient_id}/documents")
    web.post("/logout", data={"csrf_token": csrf_of(page.text)})
    publish(client, tokens.professional(demo.DOCTOR.idnps), seeded.patient_id)
    page = patient_home(web)
    marked = [row for row in rows(page.text) if "badge new" in row]
    assert len(marked) == 1


def open_document(web, seeded, title):
    page = web.get(f"/dossiers/{seeded.patient_id}/documents")
    for row in rows(page.text):
        if title in row:
            href = re.search(r'data-testid="open-document" href="([^"]+)"', row).group(1)
            return web.get(href), href
    raise AssertionError(title)


def test_a_pdf_opens_in_the_viewer_frame_and_its_bytes_are_served_for_it(web, seeded):
    patient_home(web)
    page, href = open_document(web, seeded, "Bilan sanguin")
    viewer = re.search(r'data-testid="document-viewer".*?</section>', page.text, re.S).group(0)
    assert f'<iframe src="{href}/contenu"' in viewer
    content = web.get(f"{href}/contenu")
    assert content.headers["content-type"] == "application/pdf"
    assert content.content.startswith(b"%PDF-")
    assert "frame-ancestors 'self'" in content.headers["content-security-policy"]
    download = web.get(f"{href}/contenu?telecharger=true")
    assert download.headers["content-disposition"].startswith("attachment")
    assert "sandbox" in download.headers["content-security-policy"]


def test_an_image_text_and_fhir_document_are_shown_in_the_page(web, seeded):
    patient_home(web)
    image, href = open_document(web, seeded, "Radiographie")
    assert f'<img src="{href}/contenu"' in image.text
    text, _ = open_document(web, seeded, "directives")
    assert "Personne de confiance : Lucas Martin." in text.text
    summary, _ = open_document(web, seeded, "Synthèse")
    assert "<h2>Antécédents</h2>" in summary.text
    assert "<li>Hypertension artérielle depuis 2015</li>" in summary.text


def test_opening_a_document_is_audited_as_the_api_reads_are(web, seeded, services):
    patient_home(web)
    open_document(web, seeded, "directives")
    history = web.get(f"/dossiers/{seeded.patient_id}/historique")
    entries = re.findall(r'data-testid="history-row"', history.text)
    assert entries
    text = unescape(history.text)
    assert "A ouvert un document" in text
    assert "A consulté la fiche d'un document" in text


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_html_and_script_in_a_title_an_author_and_a_narrative_are_shown_inert(
    web, seeded, client, tokens
):
    doctor = tokens.professional(demo.DOCTOR.idnps)
    bundle = {
        "resourceType": "Bundle",
        "type": "document",
        "identifier": {
            "system": "urn:ietf:rfc:3986",
            "value": "urn:uuid:0b5e7e52-5d0f-4d5b-9a51-7c7f0f4c2b11",
        },
        "timestamp": "2026-11-20T10:00:00+01:00",
        "entry": [
            {
                "fullUrl": "urn:uuid:7d0a4a73-8e3c-4c8e-b3f0-3f6f3d6f2b22",
                "resource": {
                    "resourceType": "Composition",
                    "status": "final",
                    "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5"}]},
                    "date": "2026-11-20T10:00:00+01:00",
                    "author": [{"display": "x"}],
                    "title": "t",
                    "section": [
                        {
                            "title": HOSTILE,
                            "text": {
                                "status": "generated",
                                "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="alert(2)">Texte</p>'
                                + HOSTILE
                                + '<a href="javascript:alert(3)">lien</a><style>body{}</style></div>',
                            },
                        }
                    ],
                },
            }
        ],
    }
    resource = {
        "resourceType": "DocumentReference",
        "status": "current",
        "masterIdentifier": {
            "system": "urn:ietf:rfc:3986",
            "value": "urn:uuid:9a1d3a55-1f38-4e8e-9a39-6f3b8b2d4c33",
        },
        "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5"}]},
        "category": [
            {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument",
                        "code": "11",
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/{seeded.patient_id}"},
        "date": "2026-12-01T10:00:00+01:00",
        "author": [{"display": HOSTILE}],
        "content": [
            {
                "attachment": {
                    "contentType": "application/fhir+json",
                    "title": HOSTILE,
                    "data": base64.b64encode(json.dumps(bundle).encode()).decode(),
                }
            }
        ],
    }
    stored = client.post("/fhir/DocumentReference", json=resource, headers=doctor)
    assert stored.status_code == 201, stored.text
    patient_home(web)
    listing = web.get(f"/dossiers/{seeded.patient_id}/documents")
    page = web.get(f"/dossiers/{seeded.patient_id}/documents/{stored.json()['id']}")
    for html in (listing.text, page.text):
        assert "<script>alert" not in html
        assert "onerror" not in html.replace("onerror=alert(1)&gt;", "")
        assert "&lt;script&gt;" in html
    assert "onclick" not in page.text
    assert "javascript:" not in page.text
    assert "<style>" not in page.text
    assert "<p>Texte</p>" in page.text


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src", "action", "data", "srcset", "formaction") and value:
                self.urls.append(value)


def test_no_page_references_another_host(web, seeded):
    patient_home(web)
    pid = seeded.patient_id
    pages = [
        "/",
        f"/dossiers/{pid}/documents",
        f"/dossiers/{pid}/ajouter",
        f"/dossiers/{pid}/acces",
        f"/dossiers/{pid}/historique",
        f"/dossiers/{pid}/aidants",
        f"/dossiers/{pid}/notifications",
        "/logout",
    ]
    listing = web.get(f"/dossiers/{pid}/documents").text
    pages += re.findall(r'data-testid="open-document" href="([^"]+)"', listing)
    seen = []
    for path in pages:
        response = follow(web, web.get(path))
        assert response.status_code == 200, path
        parser = Links()
        parser.feed(response.text)
        seen += parser.urls
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    assert seen
    assert [url for url in seen if not (url.startswith(("/", "?", "#")))] == []
    for asset in ("/static/style.css", "/static/app.js", "/static/icon.svg"):
        assert web.get(asset).status_code == 200


def test_csp_is_strict_on_every_page(web):
    policy = web.get("/").headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["default-src"] == "'none'"
    assert "http" not in policy
    assert "unsafe" not in policy


def test_adding_a_document_with_errors_says_so_in_french_next_to_each_field(web, seeded):
    patient_home(web)
    form = web.get(f"/dossiers/{seeded.patient_id}/ajouter")
    response = web.post(
        f"/dossiers/{seeded.patient_id}/ajouter",
        data={"csrf_token": csrf_of(form.text), "titre": " ", "type": "nope", "date": "2999-01-01"},
    )
    assert response.status_code == 422
    assert 'id="title-error">Donnez un titre au document.' in response.text
    assert 'id="type-error">Choisissez un type de document dans la liste.' in response.text
    assert 'id="date-error">La date ne peut pas être dans le futur.' in response.text
    assert 'id="file-error">Choisissez le fichier à ajouter.' in response.text


def test_a_patient_adds_then_deletes_their_own_document(web, seeded):
    patient_home(web)
    form = web.get(f"/dossiers/{seeded.patient_id}/ajouter")
    added = web.post(
        f"/dossiers/{seeded.patient_id}/ajouter",
        data={
            "csrf_token": csrf_of(form.text),
            "titre": "Carnet de vaccination",
            "type": "11369-6",
            "date": "2026-10-02",
        },
        files={"fichier": ("carnet.txt", "Tétanos : 2020".encode(), "text/plain")},
    )
    assert added.status_code == 303, added.text
    page = follow(web, added)
    assert "Le document a été ajouté." in page.text
    assert "Tétanos : 2020" in page.text
    assert "2 octobre 2026" in page.text
    delete_url = re.search(r'href="([^"]+/supprimer)"', page.text).group(1)
    confirm = web.get(delete_url)
    deleted = web.post(delete_url, data={"csrf_token": csrf_of(confirm.text)})
    assert deleted.status_code == 303
    assert "Carnet de vaccination" not in follow(web, deleted).text


def test_a_professionals_document_cannot_be_deleted_and_the_page_says_to_mask_it(web, seeded):
    patient_home(web)
    page, href = open_document(web, seeded, "Bilan sanguin")
    assert "/supprimer" not in page.text
    assert "vous pouvez le masquer" in page.text
    refused = web.post(f"{href}/supprimer", data={"csrf_token": csrf_of(page.text)})
    assert refused.status_code == 403
    masked = web.post(f"{href}/masquage", data={"csrf_token": csrf_of(page.text), "masque": "oui"})
    assert masked.status_code == 303
    access = web.get(f"/dossiers/{seeded.patient_id}/acces")
    assert "Bilan sanguin" in access.text.split('id="masked-title"')[1].split("</section>")[0]


def test_who_can_see_my_record_blocks_and_unblocks_a_professional_by_rpps(web, seeded):
    patient_home(web)
    access = web.get(f"/dossiers/{seeded.patient_id}/acces")
    assert "Professionnel RPPS 10003456789" in access.text  # the treating doctor
    wrong = web.post(
        f"/dossiers/{seeded.patient_id}/acces/blocage/ajouter",
        data={"csrf_token": csrf_of(access.text), "rpps": "123"},
    )
    assert wrong.status_code == 422
    assert 'id="rpps-blocage-error">Le numéro RPPS compte 11 chiffres' in wrong.text
    blocked = web.post(
        f"/dossiers/{seeded.patient_id}/acces/blocage/ajouter",
        data={"csrf_token": csrf_of(access.text), "rpps": "100 0567 8912"},
    )
    assert blocked.status_code == 303
    page = web.get(f"/dossiers/{seeded.patient_id}/acces")
    section = page.text.split('id="blocked-title"')[1].split("</section>")[0]
    assert "Professionnel RPPS 10005678912" in section
    unblocked = web.post(
        f"/dossiers/{seeded.patient_id}/acces/blocage/retirer",
        data={"csrf_token": csrf_of(page.text), "professionnel": "810005678912"},
    )
    assert unblocked.status_code == 303
    section = web.get(f"/dossiers/{seeded.patient_id}/acces").text.split('id="blocked-title"')[1]
    assert "10005678912" not in section.split("</section>")[0]


def test_emergency_access_can_be_refused_and_allowed_again(web, seeded):
    patient_home(web)
    page = web.get(f"/dossiers/{seeded.patient_id}/acces")
    assert "L'accès en urgence est autorisé." in page.text
    web.post(
        f"/dossiers/{seeded.patient_id}/acces/urgence",
        data={"csrf_token": csrf_of(page.text), "urgence": "non"},
    )
    page = web.get(f"/dossiers/{seeded.patient_id}/acces")
    assert "Vous avez refusé l'accès en urgence." in page.text


def test_history_is_filtered_by_actor_and_offers_a_verifiable_receipt(web, seeded, services):
    patient_home(web)
    history = web.get(f"/dossiers/{seeded.patient_id}/historique?role=professional")
    assert history.status_code == 200
    found = re.findall(r'data-testid="history-row".*?</li>', history.text, re.S)
    assert found
    assert all("Professionnel de santé" in row for row in found)
    assert all("Médecin" in row for row in found)
    receipt_url = re.search(r'href="([^"]+/recu)"', history.text).group(1)
    pending = web.get(receipt_url)
    assert pending.status_code == 409
    services.audit_log.checkpoints.make(services.session_factory)
    receipt = web.get(receipt_url)
    assert receipt.status_code == 200
    body = receipt.json()
    assert {"entry", "inclusionProof", "checkpoint"} <= set(body)
    assert body["entry"]["patient"] == seeded.patient_id


def test_another_patients_record_is_invisible(web, seeded, client, tokens):
    other_ins = ins(77)
    response = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": other_ins}],
        },
        headers=tokens.patient(other_ins),
    )
    other = response.headers["Location"].split("/Patient/")[1].split("/")[0]
    patient_home(web)
    for path in ("documents", "acces", "historique", "aidants", "ajouter", "notifications"):
        assert web.get(f"/dossiers/{other}/{path}").status_code == 404, path


def test_the_caregiver_sees_whom_they_act_for_and_until_when(web, seeded):
    sign_in_demo(web, "caregiver")
    home = follow(web, web.get("/"))
    assert "Camille Martin" in home.text
    assert 'data-testid="delegation-row"' in home.text
    page = web.get(f"/dossiers/{seeded.patient_id}/documents")
    assert "Vous agissez pour le compte de Camille Martin" in page.text
    assert "jusqu'au" in page.text
    assert len(rows(page.text)) == 4
    # A caregiver manages nothing of the policy.
    assert web.get(f"/dossiers/{seeded.patient_id}/acces").status_code == 404


def test_a_page_of_one_record_leaves_nothing_in_the_history_of_another(
    web, seeded, services, client, tokens
):
    """A caregiver acting for two patients reads one's pages: the other's history (where
    every read of their name is recorded) must not learn of it."""
    # A child, whose legal representative the caregiver is besides.
    created = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": ins(78)}],
            "name": [{"family": "Martin", "given": ["Jules"]}],
            "birthDate": "2019-03-02",
        },
        headers=tokens.professional(demo.DOCTOR.idnps),
    )
    assert created.status_code == 201, created.text
    other_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]
    operator = {
        "Authorization": "Bearer " + tokens.issuer.mint("operator", "ops", scope="system/Consent.u")
    }
    registered = client.post(
        f"/api/patients/{other_id}/policy/representatives",
        json={"representative": {"system": "urn:vault:caregiver", "value": DEMO_CAREGIVER.subject}},
        headers=operator,
    )
    assert registered.status_code == 201, registered.text
    sign_in_demo(web, "caregiver")
    home = follow(web, web.get("/"))
    assert "Camille Martin" in home.text

    before = history_size(services, other_id), history_size(services, seeded.patient_id)
    page = web.get(f"/dossiers/{seeded.patient_id}/documents")
    after = history_size(services, other_id), history_size(services, seeded.patient_id)

    assert page.status_code == 200
    assert "Vous agissez pour le compte de Camille Martin" in page.text
    assert after[0] == before[0]
    assert after[1] > before[1]


def history_size(services, patient_id: str) -> int:
    with services.session_factory() as session:
        return session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.patient_id == patient_id)
        )


def test_a_revoked_caregiver_is_refused_at_once(web, seeded, settings, services):
    patient_home(web)
    page = web.get(f"/dossiers/{seeded.patient_id}/aidants")
    assert DEMO_CAREGIVER.subject in page.text
    entry = re.search(r'/aidants/([^/"]+)/revoquer', page.text).group(1)
    for caregiver in browser(create_app(settings, services)):
        sign_in_demo(caregiver, "caregiver")
        assert caregiver.get(f"/dossiers/{seeded.patient_id}/documents").status_code == 200
        web.post(
            f"/dossiers/{seeded.patient_id}/aidants/{entry}/revoquer",
            data={"csrf_token": csrf_of(page.text)},
        )
        assert caregiver.get(f"/dossiers/{seeded.patient_id}/documents").status_code == 404
    past = web.get(f"/dossiers/{seeded.patient_id}/aidants").text
    assert "Accès terminés" in past


def test_first_visit_explains_the_space_and_opens_the_record_in_one_step(web):
    sign_in_demo(web, "patient")
    welcome = follow(web, web.get("/"))
    assert "Qui peut voir quoi, par défaut" in welcome.text
    opened = follow(web, web.post("/bienvenue", data={"csrf_token": csrf_of(welcome.text)}))
    assert "Votre espace est ouvert." in opened.text
    assert "Aucun document pour l'instant." in opened.text
    assert DEMO_PATIENT.name in opened.text


def test_notifications_list_new_documents_and_readers_with_unread_marks(
    web, seeded, client, tokens
):
    doctor = tokens.professional(demo.DOCTOR.idnps)
    client.get(f"/fhir/DocumentReference?patient={seeded.patient_id}", headers=doctor)
    patient_home(web)
    page = web.get(f"/dossiers/{seeded.patient_id}/notifications")
    assert "Un nouveau document a été ajouté" in page.text
    assert "a consulté votre dossier pour la première fois" in page.text
    assert "non lue" in page.text
    web.post(
        f"/dossiers/{seeded.patient_id}/notifications/lues", data={"csrf_token": csrf_of(page.text)}
    )
    assert (
        'class="badge new">non lue'
        not in web.get(f"/dossiers/{seeded.patient_id}/notifications").text
    )


def test_a_legal_representative_sees_the_minors_record_as_theirs(web, client, tokens, services):
    child_ins = ins(91)
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
        "Authorization": "Bearer "
        + tokens.issuer.mint("operator", "ops", scope="system/Consent.u"),
    }
    registered = client.post(
        f"/api/patients/{child}/policy/representatives",
        json={"representative": {"system": "urn:vault:caregiver", "value": "parent-1"}},
        headers=operator,
    )
    assert registered.status_code == 201, registered.text
    parent = dataclasses.replace(
        demo.principal(Role.CAREGIVER, "parent-1"), issuer=services.issuer.issuer
    )
    sign_in_as(web, parent, "Marie Petit")
    home = follow(web, web.get("/"))
    assert "Léo Petit" in home.text
    assert "Représentant légal" in home.text
    page = web.get(f"/dossiers/{child}/documents")
    assert len(rows(page.text)) == 1
    # The whole space is theirs: who can see, history, caregivers; and masking.
    for path in ("acces", "historique", "aidants"):
        assert web.get(f"/dossiers/{child}/{path}").status_code == 200, path
    href = re.search(r'data-testid="open-document" href="([^"]+)"', page.text).group(1)
    assert "Masquer ce document" in web.get(href).text


def test_an_invitation_code_is_shown_once_and_opens_the_record_to_who_accepts_it(
    web, seeded, services, settings
):
    patient_home(web)
    form = web.get(f"/dossiers/{seeded.patient_id}/aidants")
    until = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    refused = web.post(
        f"/dossiers/{seeded.patient_id}/aidants",
        data={"csrf_token": csrf_of(form.text), "droits": "lire", "jusqu_au": "2020-01-01"},
    )
    assert refused.status_code == 422
    assert 'id="categories-error">Choisissez au moins une catégorie.' in refused.text
    assert 'id="until-error">La date de fin doit être dans le futur.' in refused.text
    created = web.post(
        f"/dossiers/{seeded.patient_id}/aidants",
        data={
            "csrf_token": csrf_of(form.text),
            "droits": "lire",
            "categories": ["10", "11"],
            "jusqu_au": until,
        },
    )
    assert created.status_code == 200
    code = re.search(r'data-testid="invitation-code">([^<]+)<', created.text).group(1)
    assert f"/invitation?code={code}" in unescape(created.text)
    waiting = web.get(f"/dossiers/{seeded.patient_id}/aidants").text
    assert "Invitations en attente" in waiting
    assert code not in waiting

    assert services.issuer is not None
    helper = dataclasses.replace(
        demo.principal(Role.CAREGIVER, "aidant-marc"), issuer=services.issuer.issuer
    )
    for caregiver in browser(create_app(settings, services)):
        sign_in_as(caregiver, helper, "Marc Durand")
        form = caregiver.get(f"/invitation?code={code}")
        assert f'value="{code}"' in form.text
        wrong = caregiver.post(
            "/invitation", data={"csrf_token": csrf_of(form.text), "code": "x" * 43}
        )
        assert wrong.status_code == 422
        assert "Ce code est inconnu, déjà utilisé ou expiré." in wrong.text
        accepted = caregiver.post(
            "/invitation", data={"csrf_token": csrf_of(form.text), "code": code}
        )
        assert accepted.status_code == 303
        page = follow(caregiver, accepted)
        # Categories 10 and 11: the lab report and the summary, not the X-ray or the text.
        assert sorted(titles(page.text)) == ["Bilan sanguin", "Synthèse médicale"]
        again = caregiver.post("/invitation", data={"csrf_token": csrf_of(form.text), "code": code})
        assert again.status_code == 422
    assert "aidant-marc" in web.get(f"/dossiers/{seeded.patient_id}/aidants").text


def test_the_end_date_a_patient_picks_is_the_one_shown_for_the_invitation(web, seeded):
    patient_home(web)
    form = web.get(f"/dossiers/{seeded.patient_id}/aidants")
    # Two dates about half a year apart: one falls in summer time, one in winter time, and
    # either way the day ends at 23:59 in Paris, not in UTC (which is the next day there).
    for days in (40, 220):
        until = datetime.now(TIMEZONE).date() + timedelta(days=days)
        created = web.post(
            f"/dossiers/{seeded.patient_id}/aidants",
            data={
                "csrf_token": csrf_of(form.text),
                "droits": "lire",
                "categories": ["*"],
                "jusqu_au": until.isoformat(),
            },
        )
        assert created.status_code == 200
        page = unescape(web.get(f"/dossiers/{seeded.patient_id}/aidants").text)
        rows = re.findall(r'data-testid="invitation-row".*?</li>', page, flags=re.S)
        shown = [row for row in rows if f"jusqu'au {long_date(until)}" in row]
        assert len(shown) == 1
        assert long_date(until + timedelta(days=1)) not in shown[0]


def test_a_waiting_invitation_is_withdrawn_with_csrf_and_its_code_refused(
    web, seeded, services, settings, client, tokens
):
    patient_home(web)
    form = web.get(f"/dossiers/{seeded.patient_id}/aidants")
    until = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    created = web.post(
        f"/dossiers/{seeded.patient_id}/aidants",
        data={"csrf_token": csrf_of(form.text), "categories": ["*"], "jusqu_au": until},
    )
    code = re.search(r'data-testid="invitation-code">([^<]+)<', created.text).group(1)
    waiting = web.get(f"/dossiers/{seeded.patient_id}/aidants").text
    action = re.search(r'action="(/dossiers/[^"]+/invitations/[^"]+/retirer)"', waiting).group(1)
    assert "Retirer l'invitation" in unescape(waiting)

    # Without the form's token: refused, and the invitation still waits.
    assert web.post(action, data={}).status_code == 403
    assert web.post(action, data={"csrf_token": "forged"}).status_code == 403
    assert 'data-testid="invitation-row"' in web.get(f"/dossiers/{seeded.patient_id}/aidants").text
    # Another patient finds nothing there, through their record or the inviter's.
    other_id, other_ins = create_patient(client, tokens, seed=78)
    invitation_id = action.split("/invitations/")[1].split("/")[0]
    for stranger in browser(create_app(settings, services)):
        sign_in_as(stranger, demo.principal(Role.PATIENT, other_ins))
        page = follow(stranger, stranger.get("/"))
        for pid in (seeded.patient_id, other_id):
            refused = stranger.post(
                f"/dossiers/{pid}/aidants/invitations/{invitation_id}/retirer",
                data={"csrf_token": csrf_of(page.text)},
            )
            assert refused.status_code == 404, pid

    withdrawn = web.post(action, data={"csrf_token": csrf_of(waiting)})
    assert withdrawn.status_code == 303
    after = follow(web, withdrawn)
    assert "L'invitation a été retirée" in unescape(after.text)
    assert 'data-testid="invitation-row"' not in after.text
    # Twice: nothing waits any more.
    assert web.post(action, data={"csrf_token": csrf_of(waiting)}).status_code == 404
    history = web.get(f"/dossiers/{seeded.patient_id}/historique").text
    assert "A retiré une invitation d'aidant" in unescape(history)

    helper = dataclasses.replace(
        demo.principal(Role.CAREGIVER, "aidant-nina"), issuer=services.issuer.issuer
    )
    for caregiver in browser(create_app(settings, services)):
        sign_in_as(caregiver, helper, "Nina Roux")
        form = caregiver.get(f"/invitation?code={code}")
        refused = caregiver.post(
            "/invitation", data={"csrf_token": csrf_of(form.text), "code": code}
        )
        assert refused.status_code == 422
        assert "Ce code est inconnu, déjà utilisé ou expiré." in refused.text


def test_a_document_larger_than_a_form_is_added_from_the_space(web, seeded, settings):
    """The upload form carries documents: it takes what the FHIR routes take, not the 1 MiB
    that bounds the other forms and JSON APIs."""
    patient_home(web)
    form = web.get(f"/dossiers/{seeded.patient_id}/ajouter")
    scan = b"%PDF-1.7\n" + bytes(3 * settings.max_api_body_bytes)
    added = web.post(
        f"/dossiers/{seeded.patient_id}/ajouter",
        data={
            "csrf_token": csrf_of(form.text),
            "titre": "Compte rendu numérisé",
            "type": "11369-6",
            "date": "2026-10-02",
        },
        files={"fichier": ("scan.pdf", scan, "application/pdf")},
    )
    assert added.status_code == 303, added.text[:500]
    page = follow(web, added)
    assert "Le document a été ajouté." in page.text
