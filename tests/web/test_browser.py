"""The patient's space in a real browser (Chromium), signing in at a real OpenID provider
(authorization code + PKCE): a patient lists, opens, adds, deletes, masks, blocks, lets a
caregiver in; the caregiver signs in and reads; the patient revokes and the caregiver is
refused; the history shows each step. axe-core checks every screen, signed in or not, at
desktop and phone width, and no screen scrolls sideways at 390 px."""

from __future__ import annotations

import base64
import json
import os
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from pydantic import SecretStr

from tests.access.policy_support import audit_entries
from tests.conftest import truncate_all
from tests.factories import ins
from tests.notifications.conftest import plain_settings
from tests.notifications.smtp_server import SmtpServer
from tests.web.browser import (
    AXE,
    DESKTOP,
    DOCS_IMAGES,
    FAILURES,
    PHONE,
    WEB_CLIENT,
    WEB_SECRET,
    Account,
    Served,
    axe_violations,
    free_port,
    horizontal_overflow,
    install_axe,
    launch,
    start_provider,
)
from vault.api.app import create_app
from vault.audit.delivery import DeliveryWorker, LogSender
from vault.notifications.mail import SmtpMailer
from vault.notifications.outbox import EmailWorker, Links, enqueue_notifications
from vault.services import build_services
from vault.services.exports import export_worker
from vault.web import demo

pytestmark = pytest.mark.slow

PATIENT_INS = ins(88)
CAREGIVER = "aidant-lucas"
PATIENT = Account(
    "camille",
    {
        "vault_role": "patient",
        "vault_id": PATIENT_INS,
        "given_name": "Camille",
        "family_name": "Dupont",
    },
)
HELPER = Account(
    "lucas",
    {
        "vault_role": "caregiver",
        "vault_id": CAREGIVER,
        "given_name": "Lucas",
        "family_name": "Dupont",
    },
)
EXPORTER = Account(
    "jeanne",
    {
        "vault_role": "patient",
        "vault_id": ins(89),
        "given_name": "Jeanne",
        "family_name": "Moreau",
    },
)
# An adult's guardian (tuteur) and caregiver, signed in with their own caregiver account.
GUARDIAN = Account(
    "marie",
    {
        "vault_role": "caregiver",
        "vault_id": "parent-web",
        "given_name": "Marie",
        "family_name": "Petit",
    },
)
INVITER = Account(
    "ines",
    {
        "vault_role": "patient",
        "vault_id": ins(90),
        "given_name": "Inès",
        "family_name": "Garnier",
    },
)
# The screens docs/patients.md shows (taken with VAULT_DOCS_SCREENSHOTS=1).
DOC_SCREENS = {
    ("export-pret", "desktop"),
    ("courriel", "desktop"),
    ("connexion", "desktop"),
    ("documents", "desktop"),
    ("documents", "phone"),
    ("document-pdf", "desktop"),
    ("ajouter-erreurs", "desktop"),
    ("acces", "desktop"),
    ("aidants", "desktop"),
    ("invitation", "desktop"),
    ("aidant-accueil", "desktop"),
    ("historique", "desktop"),
}
CLASS = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, settings) -> Iterator[tuple[Served, object]]:
    """The vault on the test database: PostgreSQL, and SQLite in scripts/test's second pass."""
    install_axe()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    workdir = tmp_path_factory.mktemp("web-provider")
    for provider in start_provider(workdir, url, [PATIENT, HELPER, EXPORTER, INVITER, GUARDIAN]):
        configured = settings.model_copy(
            update={
                "base_url": url,
                "oidc_issuers": json.dumps(
                    [
                        {
                            "issuer": provider.issuer,
                            "jwks_uri": provider.jwks_uri,
                            "audience": "urn:vault:test",
                            "role_claim": "vault_role",
                            "subject_claim": "vault_id",
                        }
                    ]
                ),
                "web_oidc_issuer": provider.issuer,
                "web_oidc_client_id": WEB_CLIENT,
                "web_oidc_client_secret": SecretStr(WEB_SECRET),
                "web_oidc_scope": "openid vault",
                # A service that sends e-mail (the e-mail test runs its own SMTP server).
                "smtp_host": "127.0.0.1",
                "smtp_sender": "Mon espace santé <no-reply@vault.test>",
            }
        )
        built = build_services(configured)
        try:
            with Served(create_app(configured, built), port) as served:
                yield served, built
        finally:
            truncate_all(built)
            built.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


class Screens:
    """Each screen of the scenario: axe at desktop and phone width, no sideways scroll;
    a screenshot for docs/patients.md when VAULT_DOCS_SCREENSHOTS is set."""

    def __init__(self) -> None:
        self.checked: list[str] = []

    def check(self, page: Page, name: str) -> None:
        page.wait_for_load_state("load")
        for size, label in ((DESKTOP, "desktop"), (PHONE, "phone")):
            page.set_viewport_size(size)
            violations = axe_violations(page)
            assert violations == [], f"{name} ({label}): {violations}"
            if label == "phone":
                assert horizontal_overflow(page) <= 0, f"{name} scrolls sideways at 390 px"
            if os.environ.get("VAULT_DOCS_SCREENSHOTS") and (name, label) in DOC_SCREENS:
                DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(DOCS_IMAGES / f"patients-{name}-{label}.png"))
        page.set_viewport_size(DESKTOP)
        self.checked.append(name)


def context_for(chromium, request, name: str):
    context = chromium.new_context(viewport=DESKTOP, locale="fr-FR")
    # Before every page's own scripts, outside its CSP (which would refuse an injected
    # script tag -- as it should).
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return context, page, refused


def keep_failure(request, page: Page, name: str) -> None:
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        FAILURES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(FAILURES / f"{request.node.name}-{name}.png"), full_page=True)


def tab_to(page: Page, testid: str, limit: int = 60) -> None:
    """Press Tab until the element with this test id has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement?.dataset?.testid") == testid:
            return
    raise AssertionError(f"Tab never reached {testid}")


def sign_in(page: Page, base: str, account: Account) -> None:
    page.goto(base + "/")
    page.get_by_role("link", name="Se connecter").click()
    page.locator("input[name=login]").fill(account.login)
    page.locator("input[name=password]").fill("un mot de passe")
    page.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(re.escape(base) + r"/.*"))


def publish(
    base: str,
    services,
    patient_id: str,
    title: str,
    content: bytes,
    content_type: str,
    type_code: str,
    days_ago: int,
) -> None:
    token = services.issuer.mint("professional", demo.DOCTOR.idnps, profession="10")
    resource = {
        "resourceType": "DocumentReference",
        "status": "current",
        "masterIdentifier": {
            "system": "urn:ietf:rfc:3986",
            "value": f"urn:uuid:{os.urandom(16).hex()[:8]}-0000-4000-8000-{os.urandom(6).hex()}",
        },
        "type": {"coding": [{"system": "http://loinc.org", "code": type_code}]},
        "category": [{"coding": [{"system": CLASS, "code": "10"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(),
        "author": [
            {
                "identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": demo.DOCTOR.idnps},
                "display": demo.DOCTOR.name,
            }
        ],
        "content": [
            {
                "attachment": {
                    "contentType": content_type,
                    "title": title,
                    "data": base64.b64encode(content).decode(),
                }
            }
        ],
    }
    response = httpx.post(
        f"{base}/fhir/DocumentReference",
        json=resource,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
        timeout=30,
    )
    assert response.status_code == 201, response.text


def test_a_patient_and_a_caregiver_use_the_space_in_chromium(stack, chromium, request, tmp_path):
    served, services = stack
    base = served.url
    screens = Screens()
    context, page, refused = context_for(chromium, request, "patient")
    helper_context, helper, helper_refused = context_for(chromium, request, "caregiver")
    try:
        # Signed out: the sign-in page.
        page.goto(base + "/")
        expect(page.get_by_role("heading", level=1)).to_have_text("Connexion à votre espace santé")
        screens.check(page, "connexion")

        # Sign in at the provider (authorization code + PKCE); a first visit.
        sign_in(page, base, PATIENT)
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Bienvenue dans votre espace santé"
        )
        screens.check(page, "bienvenue")
        page.get_by_role("button", name="Ouvrir mon espace").click()
        expect(page.get_by_role("status")).to_have_text("Votre espace est ouvert.")
        patient_id = page.url.split("/dossiers/")[1].split("/")[0]

        publish(
            base,
            services,
            patient_id,
            "Bilan sanguin",
            demo.pdf("Bilan sanguin", ["Hémoglobine : 13,2 g/dL"]),
            "application/pdf",
            "11502-2",
            20,
        )
        publish(
            base,
            services,
            patient_id,
            "Compte rendu de consultation",
            b"Tension normale.",
            "text/plain",
            "11488-4",
            40,
        )

        # List.
        page.goto(f"{base}/dossiers/{patient_id}/documents")
        expect(page.get_by_test_id("document-row")).to_have_count(2)
        screens.check(page, "documents")

        # Open the PDF: the viewer shows it.
        with page.expect_response(re.compile(r"/contenu$")) as shown:
            page.get_by_role("link", name=re.compile(r"^Ouvrir Bilan sanguin du ")).click()
        assert shown.value.status == 200
        assert shown.value.headers["content-type"] == "application/pdf"
        viewer = page.get_by_test_id("document-viewer")
        expect(viewer).to_be_visible()
        frame = viewer.locator("iframe")
        expect(frame).to_be_visible()
        assert frame.bounding_box()["height"] > 300
        # Chromium's PDF viewer took the document in the frame.
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while not any(f.url.startswith("chrome-extension://") for f in page.frames):
            assert datetime.now(UTC) < deadline, [f.url for f in page.frames]
            page.wait_for_timeout(200)
        screens.check(page, "document-pdf")

        # Add a document of one's own.
        page.get_by_role("link", name="Ajouter un document").click()
        screens.check(page, "ajouter")
        page.get_by_role("button", name="Ajouter").click()
        expect(page.locator("#title-error")).to_have_text("Donnez un titre au document.")
        screens.check(page, "ajouter-erreurs")
        page.get_by_label("Titre").fill("Carnet de vaccination")
        page.get_by_label("Type de document").select_option(label="Historique des vaccinations")
        page.get_by_label("Fichier").set_input_files(
            files=[
                {
                    "name": "carnet.txt",
                    "mimeType": "text/plain",
                    "buffer": "Tétanos : 2020".encode(),
                }
            ]
        )
        page.get_by_role("button", name="Ajouter").click()
        expect(page.get_by_role("status")).to_have_text("Le document a été ajouté.")
        expect(page.get_by_test_id("document-viewer")).to_contain_text("Tétanos : 2020")
        screens.check(page, "document-texte")

        # Delete it.
        page.get_by_role("link", name="Supprimer ce document").click()
        screens.check(page, "supprimer")
        page.get_by_role("button", name="Supprimer définitivement").click()
        expect(page.get_by_role("status")).to_have_text("Le document a été supprimé.")
        expect(page.get_by_test_id("document-row")).to_have_count(2)

        # Mask the professional's report.
        page.get_by_role(
            "link", name=re.compile(r"^Ouvrir Compte rendu de consultation du ")
        ).click()
        expect(page.get_by_text("vous pouvez le masquer")).to_be_visible()
        page.get_by_role("button", name="Masquer ce document").click()
        expect(page.get_by_role("status")).to_have_text(
            "Le document est masqué aux professionnels."
        )

        # Block a professional.
        page.get_by_role("link", name="Qui peut voir mon dossier").click()
        blocked = page.locator(
            "section", has=page.get_by_role("heading", name="Professionnels bloqués")
        )
        blocked.get_by_label("Numéro RPPS (11 chiffres)").fill("10005678912")
        blocked.get_by_role("button", name="Bloquer ce professionnel").click()
        expect(page.get_by_role("status")).to_have_text("Vos règles d'accès ont été mises à jour.")
        expect(blocked).to_contain_text("Professionnel RPPS 10005678912")
        screens.check(page, "acces")

        # Invite a caregiver: the page shows a one-time code.
        page.get_by_role("link", name="Aidants", exact=True).click()
        page.get_by_label("Lire et ajouter des documents").check()
        until = (datetime.now(UTC) + timedelta(days=90)).date().isoformat()
        page.get_by_label("Jusqu'au").fill(until)
        page.get_by_role("button", name="Créer l'invitation").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Invitation créée")
        code = page.get_by_test_id("invitation-code").inner_text()
        assert len(code) >= 40
        screens.check(page, "invitation")

        # The caregiver signs in with their own identity and accepts.
        sign_in(helper, base, HELPER)
        expect(helper.get_by_text("Personne ne vous a encore donné accès")).to_be_visible()
        helper.get_by_role("link", name="J'ai reçu une invitation").click()
        screens.check(helper, "accepter")
        helper.get_by_label("Code d'invitation").fill("pas-le-bon-code")
        helper.get_by_role("button", name="Accepter").click()
        expect(helper.locator("#code-error")).to_have_text(
            "Ce code est inconnu, déjà utilisé ou expiré."
        )
        helper.get_by_label("Code d'invitation").fill(code)
        helper.get_by_role("button", name="Accepter").click()
        expect(helper.get_by_role("status")).to_have_text(
            "Invitation acceptée : vous pouvez maintenant aider cette personne."
        )
        expect(helper.get_by_text("Vous agissez pour le compte de Camille Dupont")).to_be_visible()
        camille = helper.url
        # It reads; the masked report is not theirs to see.
        expect(helper.get_by_test_id("document-row")).to_have_count(1)
        helper.get_by_test_id("open-document").first.click()
        expect(helper.get_by_test_id("document-viewer")).to_be_visible()
        screens.check(helper, "aidant-document")
        helper.goto(base + "/")
        expect(helper.get_by_test_id("delegation-row")).to_contain_text("Camille Dupont")
        screens.check(helper, "aidant-accueil")

        # The delegation is bound to who accepted it, under the name their issuer gave.
        page.get_by_role("link", name="Aidants", exact=True).click()
        expect(page.get_by_test_id("delegation-row")).to_have_count(1)
        expect(page.get_by_test_id("delegation-row")).to_contain_text("Lucas Dupont")
        screens.check(page, "aidants")

        # The patient revokes; the caregiver is refused at once.
        page.get_by_role("button", name="Retirer l'accès de Lucas Dupont").click()
        expect(page.get_by_role("status")).to_have_text("L'accès de l'aidant a été retiré.")
        helper.goto(camille)
        expect(helper.get_by_role("heading", level=1)).to_have_text("Un problème est survenu")
        screens.check(helper, "aidant-refuse")

        # The history shows each step.
        page.get_by_role("link", name="Qui a consulté mon dossier").click()
        screens.check(page, "historique")
        texts = page.get_by_test_id("history-row").all_inner_texts()
        while page.get_by_role("link", name="Accès plus anciens").count():
            page.get_by_role("link", name="Accès plus anciens").click()
            texts += page.get_by_test_id("history-row").all_inner_texts()
        text = " ".join(texts)
        for step in (
            "A ouvert un document",
            "A ajouté un document",
            "A supprimé un document",
            "A modifié un document",
            "A modifié les règles d'accès",
            "A donné accès à un aidant",
            "A accepté une invitation d'aidant",
            "A retiré l'accès d'un aidant",
        ):
            assert step in text, step
        assert "Aidant" in text
        page.get_by_role("link", name="Notifications").click()
        screens.check(page, "notifications")

        # Sign out: here and at the provider.
        page.get_by_role("button", name="Se déconnecter").click()
        if not page.url.startswith(base):
            page.locator("button[type=submit]").first.click()
        page.wait_for_url(re.compile(re.escape(base) + r"/$"))
        expect(page.get_by_role("link", name="Se connecter")).to_be_visible()
        page.goto(f"{base}/dossiers/{patient_id}/documents")
        expect(page.get_by_role("heading", level=1)).to_have_text("Connexion à votre espace santé")

        assert refused == []
        assert helper_refused == []
        assert len(screens.checked) >= 14
    finally:
        keep_failure(request, page, "patient")
        keep_failure(request, helper, "caregiver")
        context.close()
        helper_context.close()


def test_the_demo_accounts_sign_in_in_one_click(stack, chromium, request):
    served, services = stack
    demo.seed(services)
    base = served.url
    screens = Screens()
    context, page, refused = context_for(chromium, request, "demo")
    try:
        page.goto(base + "/")
        expect(page.get_by_text("Démonstration.")).to_be_visible()
        # With the keyboard alone: to the demo button, then to a document, and open it.
        tab_to(page, "demo-sign-in-patient")
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("document-row")).to_have_count(4)
        tab_to(page, "open-document")
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("document-viewer")).to_be_visible()
        expect(page.get_by_text("Démonstration.")).to_be_visible()
        # Each kind of document opens in the page.
        for title in (
            "Synthèse médicale",
            "Mes directives anticipées",
            "Radiographie du genou droit",
        ):
            page.get_by_role("link", name="Documents", exact=True).click()
            page.get_by_role("link", name=re.compile(rf"^Ouvrir {title} du ")).click()
            expect(page.get_by_test_id("document-viewer")).to_be_visible()
        image = page.get_by_test_id("document-viewer").locator("img")
        expect(image).to_be_visible()
        assert page.evaluate("(img) => img.naturalWidth", image.element_handle()) > 0
        screens.check(page, "demo-image")
        page.get_by_role("button", name="Se déconnecter").click()
        page.get_by_test_id("demo-sign-in-caregiver").click()
        expect(page.get_by_test_id("delegation-row")).to_contain_text("Camille Martin")
        assert refused == []
    finally:
        keep_failure(request, page, "demo")
        context.close()


def test_every_signed_out_screen_passes_axe(stack, chromium, request):
    served, _services = stack
    screens = Screens()
    context, page, _refused = context_for(chromium, request, "anonymous")
    try:
        for path in ("/", "/logout", "/dossiers/x/documents"):
            page.goto(served.url + path)
            screens.check(page, "anonyme")
    finally:
        keep_failure(request, page, "anonymous")
        context.close()


def test_a_patient_withdraws_an_invitation_and_its_code_no_longer_works_in_chromium(
    stack, chromium, request
):
    served, _services = stack
    base = served.url
    screens = Screens()
    context, page, refused = context_for(chromium, request, "inviter")
    helper_context, helper, helper_refused = context_for(chromium, request, "invited")
    try:
        sign_in(page, base, INVITER)
        page.get_by_role("button", name="Ouvrir mon espace").click()
        expect(page.get_by_role("status")).to_have_text("Votre espace est ouvert.")

        # An invitation, its code shown once.
        page.get_by_role("link", name="Aidants", exact=True).click()
        until = (datetime.now(UTC) + timedelta(days=60)).date().isoformat()
        page.get_by_label("Jusqu'au").fill(until)
        page.get_by_role("button", name="Créer l'invitation").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Invitation créée")
        code = page.get_by_test_id("invitation-code").inner_text()

        # Waiting, beside its button; withdrawn in one step, and the page says so.
        page.get_by_role("link", name="Aidants", exact=True).click()
        expect(page.get_by_test_id("invitation-row")).to_have_count(1)
        screens.check(page, "aidants-invitation")
        withdraw = page.get_by_role("button", name=re.compile(r"^Retirer l'invitation du "))
        # The button's hint says whose code stops working: the invitation's, not the
        # caregiver's ("Son code" read as either).
        expect(withdraw).to_have_accessible_description(
            "Le code de cette invitation ne pourra plus être utilisé."
        )
        withdraw.click()
        expect(page.get_by_role("status")).to_have_text(
            "L'invitation a été retirée : son code ne peut plus être utilisé."
        )
        expect(page.get_by_test_id("invitation-row")).to_have_count(0)
        expect(page.get_by_test_id("delegation-row")).to_have_count(0)
        screens.check(page, "aidants-invitation-retiree")

        # The code is refused as an unknown one is.
        sign_in(helper, base, HELPER)
        helper.goto(f"{base}/invitation?code={code}")
        helper.get_by_role("button", name="Accepter").click()
        expect(helper.locator("#code-error")).to_have_text(
            "Ce code est inconnu, déjà utilisé ou expiré."
        )
        screens.check(helper, "accepter-refuse")
        assert refused == []
        assert helper_refused == []
    finally:
        keep_failure(request, page, "inviter")
        keep_failure(request, helper, "invited")
        context.close()
        helper_context.close()


def test_the_api_e_mail_link_pages_are_the_spaces_and_pass_axe(stack, chromium, request):
    """The pages of the links under /api/notifications: the space's layout and texts."""
    served, _services = stack
    screens = Screens()
    context, page, refused = context_for(chromium, request, "api-links")
    try:
        token = "A" * 43
        for path, heading, button in (
            (
                f"/api/notifications/confirm?token={token}",
                "Confirmer mon adresse e-mail",
                "Confirmer mon adresse",
            ),
            (
                f"/api/notifications/unsubscribe?record=r-1&token={token}",
                "Ne plus recevoir d'e-mails",
                "Ne plus recevoir d'e-mails",
            ),
        ):
            page.goto(served.url + path)
            expect(page.get_by_role("heading", level=1)).to_have_text(heading)
            assert page.evaluate("() => document.documentElement.lang") == "fr"
            screens.check(page, "lien-api")
            # An unknown link: refused, saying so.
            page.get_by_role("button", name=button).click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Lien invalide")
            expect(page.get_by_role("alert")).to_have_text(
                "Ce lien est inconnu, a déjà servi ou a expiré."
            )
            screens.check(page, "lien-api-refuse")
        assert refused == []
    finally:
        keep_failure(request, page, "api-links")
        context.close()


def test_a_patient_exports_their_record_and_chooses_their_e_mails_in_chromium(
    stack, chromium, request, tmp_path
):
    """The export page (ask, follow without reloading, download, a refusal in French) and
    the e-mail page (an address confirmed by the link the e-mail carries, events, stop),
    then the e-mail's one-click opt-out opened in a browser that never signed in."""
    served, services = stack
    base = served.url
    screens = Screens()
    context, page, refused = context_for(chromium, request, "exporter")
    anonymous_context, anonymous, anonymous_refused = context_for(chromium, request, "mailbox")
    context.set_default_timeout(20_000)
    try:
        with SmtpServer() as smtp:
            emails = EmailWorker(
                services.session_factory,
                services.notifications.contacts,
                SmtpMailer(plain_settings(smtp)),
                Links(base),
                sender="Mon espace santé <no-reply@vault.test>",
            )
            sign_in(page, base, EXPORTER)
            page.get_by_role("button", name="Ouvrir mon espace").click()
            expect(page.get_by_role("status")).to_have_text("Votre espace est ouvert.")
            patient_id = page.url.split("/dossiers/")[1].split("/")[0]
            for title, days in (("Bilan lipidique", 3), ("Compte rendu de radiologie", 9)):
                publish(
                    base,
                    services,
                    patient_id,
                    title,
                    f"{title} : normal.".encode(),
                    "text/plain",
                    "11502-2",
                    days,
                )

            # Ask for an export; the page follows it as the worker builds it.
            page.get_by_role("link", name="Télécharger mon dossier").click()
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Télécharger tout mon dossier"
            )
            screens.check(page, "export")
            follows: list[str] = []
            page.on(
                "request",
                lambda sent: (
                    follows.append(sent.url)
                    if sent.resource_type == "fetch" and sent.url.endswith("/export")
                    else None
                ),
            )
            page.get_by_role("button", name="Demander un export").click()
            expect(page.get_by_role("status")).to_have_text(
                "Votre demande d'export est enregistrée."
            )
            expect(page.get_by_test_id("export-status")).to_have_text("En attente \u2013 0 %")
            expect(page.get_by_role("progressbar", name="Avancement de l'export")).to_be_visible()
            screens.check(page, "export-en-cours")
            page.get_by_role("button", name="Demander un export").click()
            expect(page.get_by_role("alert")).to_have_text(
                "Un export de ce dossier est déjà en cours de préparation. Attendez qu'il soit prêt."
            )
            screens.check(page, "export-refus")
            assert export_worker(services).run_once().built == 1
            # No reload: the page's script brings the new state in (and clears the refusal).
            expect(page.get_by_test_id("export-status")).to_have_text("Prêt")
            expect(page.get_by_role("alert")).to_have_count(0)
            expect(page.get_by_test_id("export-row")).to_contain_text("2 document(s)")
            page.get_by_role("link", name="Télécharger mon dossier").click()
            screens.check(page, "export-pret")
            with page.expect_download() as downloaded:
                page.get_by_test_id("export-download").click()
            archive_path = tmp_path / "export.zip"
            downloaded.value.save_as(archive_path)
            with zipfile.ZipFile(archive_path) as archive:
                names = archive.namelist()
                assert "bundle.json" in names
                assert "index.html" in names
                assert sum(name.startswith("documents/") for name in names) == 2
            # The page followed the build by asking again; the history has one line for
            # the request, one for the build and one for the download, none per refresh.
            assert follows
            assert [
                entry.detail.get("stage")
                for entry in audit_entries(services, patient_id)
                if entry.detail.get("permission") == "record:export"
            ] == ["requested", "built", "downloaded"]

            # E-mail: a wrong address is refused next to the field, a good one gets a link.
            page.get_by_role("link", name="Notifications").click()
            page.get_by_role("link", name="Recevoir ces nouvelles par e-mail").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Recevoir des e-mails")
            screens.check(page, "courriel")
            page.get_by_label("Adresse e-mail", exact=True).fill("jeanne@")
            page.get_by_role("button", name="Envoyer le lien de confirmation").click()
            expect(page.locator("#address-error")).to_have_text(
                "Cette adresse e-mail n'est pas valide (par exemple : prenom.nom@exemple.fr)."
            )
            screens.check(page, "courriel-erreur")
            page.get_by_label("Adresse e-mail", exact=True).fill("jeanne.moreau@example.org")
            page.get_by_role("button", name="Envoyer le lien de confirmation").click()
            expect(page.get_by_role("status")).to_contain_text(
                "Un lien de confirmation a été envoyé"
            )
            expect(page.get_by_test_id("email-address")).to_contain_text("à confirmer")
            assert emails.run_once().sent == 1
            confirm = re.search(
                r"http://\S+/courriel/confirmer\?token=\S+",
                smtp.mailbox.messages()[0].get_content(),
            ).group(0)

            # The link opens in a browser that never signed in.
            anonymous.goto(confirm)
            screens.check(anonymous, "courriel-confirmer")
            anonymous.get_by_role("button", name="Confirmer mon adresse").click()
            expect(anonymous.get_by_role("heading", level=1)).to_have_text("Adresse confirmée")
            page.reload()
            expect(page.get_by_test_id("email-address")).to_contain_text("confirmée")

            # Choose the events: only new documents.
            events = page.get_by_role("group", name="M'envoyer un e-mail quand")
            for box in events.get_by_role("checkbox").all():
                box.uncheck()
            events.get_by_label("un nouveau document est disponible").check()
            page.get_by_role("button", name="Enregistrer mes choix").click()
            expect(page.get_by_role("status")).to_have_text("Vos choix ont été enregistrés.")
            expect(events.get_by_role("checkbox", checked=True)).to_have_count(1)

            # A new document: its e-mail says nothing of it and carries the opt-out link.
            publish(
                base,
                services,
                patient_id,
                "Sérologie",
                "Sérologie : 12".encode(),
                "text/plain",
                "11502-2",
                1,
            )
            DeliveryWorker(
                services.session_factory, LogSender(), fan_out=enqueue_notifications
            ).run_once()
            # (The notifications of the first two documents, not yet handed on, go too.)
            assert emails.run_once().sent >= 1
            told = smtp.mailbox.messages()[-1]
            for message in smtp.mailbox.messages()[1:]:
                assert message["Subject"] == "Un nouveau document est disponible dans votre espace"
                for title in ("Sérologie", "Bilan lipidique", "radiologie"):
                    assert title not in message.get_content()
            anonymous.goto(told["List-Unsubscribe"].strip("<>"))
            screens.check(anonymous, "desinscription")
            anonymous.get_by_role("button", name="Ne plus recevoir d'e-mails").click()
            expect(anonymous.get_by_role("heading", level=1)).to_have_text(
                "Vous ne recevrez plus d'e-mails"
            )
            page.reload()
            expect(events.get_by_role("checkbox", checked=True)).to_have_count(0)

            # Or from the page: stop them all.
            page.get_by_role("button", name="Arrêter tous les e-mails").click()
            expect(page.get_by_role("status")).to_have_text("Vous ne recevrez plus d'e-mails.")
        assert refused == []
        assert anonymous_refused == []
    finally:
        keep_failure(request, page, "exporter")
        keep_failure(request, anonymous, "mailbox")
        context.close()
        anonymous_context.close()


def test_an_export_page_refused_midway_stops_asking_in_chromium(stack, chromium, request):
    """An adult's guardian (tuteur) who is also their caregiver follows an export being
    built; the tutelle ends meanwhile, the delegation stays. Only a representative may
    export, so the page's next refresh is refused (404, as a record one has no standing
    on, and on record as every refusal is), and the page asks no more: one refused fetch
    and one refusal in the patient's history however many refresh periods go by, not one
    every 4 s."""
    served, services = stack
    base = served.url
    issuer = services.settings.web_oidc_issuer
    screens = Screens()
    context, page, refused = context_for(chromium, request, "guardian")
    context.set_default_timeout(20_000)
    try:
        patient_ins = ins(94)
        doctor = services.issuer.mint("professional", demo.DOCTOR.idnps, profession="10")
        created = httpx.post(
            f"{base}/fhir/Patient",
            json={
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": patient_ins}],
                "name": [{"family": "Petit", "given": ["Paul"]}],
                "birthDate": "1948-03-12",
            },
            headers={"Authorization": f"Bearer {doctor}"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        patient_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]
        policy = f"{base}/api/patients/{patient_id}/policy"
        delegated = httpx.post(
            f"{policy}/delegations",
            json={
                "caregiver": GUARDIAN.claims["vault_id"],
                "issuer": issuer,
                "scope": "read",
                "categories": ["*"],
                "expires": (datetime.now(UTC) + timedelta(days=90)).isoformat(),
            },
            headers={"Authorization": "Bearer " + services.issuer.mint("patient", patient_ins)},
            timeout=30,
        )
        assert delegated.status_code == 201, delegated.text
        operator = {
            "Authorization": "Bearer "
            + services.issuer.mint("operator", "ops", scope="system/Consent.u")
        }
        tutelle = httpx.post(
            f"{policy}/representatives",
            json={
                "representative": {
                    "system": "urn:vault:caregiver",
                    "value": GUARDIAN.claims["vault_id"],
                },
                "issuer": issuer,
                "measure": {"type": "tutelle", "reference": "TJ Lyon, RG 26/01234"},
            },
            headers=operator,
            timeout=30,
        )
        assert tutelle.status_code == 201, tutelle.text

        sign_in(page, base, GUARDIAN)
        export = f"{base}/dossiers/{patient_id}/export"
        page.goto(export)
        expect(page.get_by_role("heading", level=1)).to_have_text("Télécharger tout mon dossier")
        # Every fetch the page's script makes of itself, and what each was answered.
        answers: list[int] = []
        page.on(
            "response",
            lambda answered: (
                answers.append(answered.status)
                if answered.request.resource_type == "fetch" and answered.url == export
                else None
            ),
        )
        page.get_by_role("button", name="Demander un export").click()
        expect(page.get_by_role("status")).to_have_text("Votre demande d'export est enregistrée.")
        # No export worker runs beside this server: the job waits, the page follows it.
        expect(page.get_by_test_id("export-status")).to_have_text("En attente \u2013 0 %")
        screens.check(page, "export-tuteur")
        with page.expect_response(
            lambda answered: answered.url == export and answered.status == 200, timeout=15_000
        ):
            pass
        seen = {entry.id for entry in audit_entries(services, patient_id)}

        # The tutelle ends while the archive waits to be built.
        with page.expect_response(
            lambda answered: answered.url == export and answered.status >= 400, timeout=15_000
        ) as first_refusal:
            ended = httpx.delete(
                f"{policy}/representatives/{tutelle.json()['id']}", headers=operator, timeout=30
            )
            assert ended.status_code == 204, ended.text
        status = first_refusal.value.status
        # Three refresh periods (4 s each) and more: the previous script asked in each.
        page.wait_for_timeout(3 * 4_000 + 2_000)

        refusals = [
            (entry.outcome, entry.detail.get("permission"), entry.detail.get("stage"))
            for entry in audit_entries(services, patient_id)
            if entry.id not in seen and entry.outcome != "success"
        ]
        assert status == 404, status
        # One refused fetch, the last; one refusal in the history.
        assert (answers.count(status), refusals) == (
            1,
            [("denied", "record:export", "listed")],
        ), answers
        assert answers[-1] == status, answers
        assert set(answers[:-1]) == {200}, answers
        # The page keeps the last state it had, with its own "Actualiser" link.
        expect(page.get_by_test_id("export-status")).to_have_text("En attente \u2013 0 %")
        screens.check(page, "export-tuteur-refuse")
        assert refused == []
    finally:
        keep_failure(request, page, "guardian")
        context.close()
