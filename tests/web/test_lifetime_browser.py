"""A space over a lifetime in a real browser (Chromium), signing in at a real OpenID
provider: a patient closes their space (with the keyboard, through the confirmation
step), signs in again and finds it closed with its deletion date, asks for deletion,
reopens it; another closes asking for deletion; a person without a space opposes its
creation, signs in again to find the opposition, and withdraws it. axe-core checks every
screen at desktop and phone width."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from pydantic import SecretStr
from sqlalchemy import select

from tests.access.policy_support import audit_entries
from tests.conftest import truncate_all
from tests.factories import ins
from tests.web.browser import (
    DESKTOP,
    DOCS_IMAGES,
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
from tests.web.test_browser import context_for, keep_failure, publish, sign_in, tab_to
from vault.api.app import create_app
from vault.models import AuditEntry, Opposition
from vault.services import build_services

pytestmark = pytest.mark.slow


def patient(login: str, seed: int, given: str, family: str) -> Account:
    return Account(
        login,
        {
            "vault_role": "patient",
            "vault_id": ins(seed),
            "given_name": given,
            "family_name": family,
        },
    )


CLOSER = patient("louise", 84, "Louise", "Bernard")
DELETER = patient("hugo", 83, "Hugo", "Lefebvre")
OPPONENT = patient("ines", 82, "Inès", "Garnier")
# The screens docs/patients.md shows (taken with VAULT_DOCS_SCREENSHOTS=1).
DOC_SCREENS = {
    ("fermeture", "desktop"),
    ("fermeture-confirmer", "desktop"),
    ("espace-ferme", "desktop"),
    ("opposition", "desktop"),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, settings) -> Iterator[tuple[Served, object]]:
    """The vault on the test database: PostgreSQL, or SQLite with VAULT_TEST_DATABASE."""
    install_axe()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    workdir = tmp_path_factory.mktemp("lifetime-provider")
    for provider in start_provider(workdir, url, [CLOSER, DELETER, OPPONENT]):
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


def check(page: Page, name: str) -> None:
    """axe at desktop and phone width, no sideways scroll at 390 px; a screenshot for
    docs/patients.md when VAULT_DOCS_SCREENSHOTS is set."""
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


def open_space(page: Page, base: str, account: Account) -> str:
    sign_in(page, base, account)
    page.get_by_role("button", name="Ouvrir mon espace").click()
    expect(page.get_by_role("status")).to_have_text("Votre espace est ouvert.")
    return page.url.split("/dossiers/")[1].split("/")[0]


def test_a_patient_closes_finds_it_closed_at_the_next_sign_in_and_reopens(stack, chromium, request):
    served, services = stack
    base = served.url
    context, page, refused = context_for(chromium, request, "closer")
    again_context, again, again_refused = context_for(chromium, request, "closer-again")
    try:
        patient_id = open_space(page, base, CLOSER)
        publish(base, services, patient_id, "Bilan sanguin", b"Normal.", "text/plain", "11502-2", 5)
        page.reload()
        expect(page.get_by_test_id("document-row")).to_have_count(1)

        page.get_by_role("link", name="Fermer mon espace").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Fermer mon espace")
        expect(page.get_by_role("main")).to_contain_text("pendant 10 ans")
        check(page, "fermeture")
        # The choice, then the confirmation step, with the keyboard only.
        page.get_by_label(re.compile("conserver mes documents jusqu'au")).focus()
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text("Confirmer la fermeture")
        check(page, "fermeture-confirmer")
        tab_to(page, "closure-confirm")
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_have_text("L'espace est fermé.")
        expect(page.get_by_role("heading", level=1)).to_have_text("Cet espace est fermé")
        expect(page.get_by_role("navigation")).to_have_count(0)

        # Signing in again (another browser): the page says it is closed, and until when.
        sign_in(again, base, CLOSER)
        expect(again.get_by_role("heading", level=1)).to_have_text("Cet espace est fermé")
        expect(again.get_by_test_id("closure-deletion")).to_contain_text(
            "conservés, chiffrés, jusqu'au"
        )
        check(again, "espace-ferme")

        # Deletion now, after its own confirmation; then reopening calls it off.
        again.get_by_role("link", name="Demander la suppression maintenant").click()
        expect(again.get_by_role("heading", level=1)).to_have_text(
            "Confirmer la demande de suppression"
        )
        check(again, "suppression-confirmer")
        again.get_by_role("button", name="Confirmer la demande de suppression").click()
        expect(again.get_by_role("status")).to_have_text(
            "La demande de suppression est enregistrée."
        )
        expect(again.get_by_test_id("closure-deletion")).to_contain_text(
            "supprimés définitivement au plus tard le"
        )
        check(again, "espace-ferme-suppression")
        tab_to(again, "reopen")
        again.keyboard.press("Enter")
        expect(again.get_by_role("status")).to_have_text(
            "L'espace est rouvert : ses documents sont de nouveau consultables."
        )
        expect(again.get_by_test_id("document-row")).to_have_count(1)
        check(again, "rouvert")
        assert refused == []
        assert again_refused == []
    finally:
        keep_failure(request, page, "closer")
        keep_failure(request, again, "closer-again")
        context.close()
        again_context.close()
    stages = [
        (entry.detail.get("permission"), entry.detail.get("stage"))
        for entry in audit_entries(services, patient_id)
        if entry.outcome == "success" and entry.detail.get("stage")
    ]
    for step in (
        ("record:close", "closed"),
        ("record:close", "archived"),
        ("record:delete", "requested"),
        ("record:reopen", "reopened"),
    ):
        assert step in stages, step


def test_a_patient_closes_asking_for_deletion(stack, chromium, request):
    served, services = stack
    base = served.url
    context, page, refused = context_for(chromium, request, "deleter")
    try:
        patient_id = open_space(page, base, DELETER)
        page.get_by_role("link", name="Fermer mon espace").click()
        page.get_by_label(re.compile("supprimer mes documents dans les 30 jours")).check()
        page.get_by_role("button", name="Continuer").click()
        expect(page.get_by_role("main")).to_contain_text(
            "Vos documents seront supprimés définitivement au plus tard le"
        )
        check(page, "fermeture-suppression")
        page.get_by_role("button", name="Fermer mon espace et demander la suppression").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Cet espace est fermé")
        expect(page.get_by_test_id("closure-deletion")).to_contain_text(
            "La suppression a été demandée le"
        )
        expect(page.get_by_role("link", name="Demander la suppression maintenant")).to_have_count(0)
        assert refused == []
    finally:
        keep_failure(request, page, "deleter")
        context.close()
    with services.session_factory() as session:
        details = [
            entry.detail
            for entry in session.scalars(
                select(AuditEntry).where(AuditEntry.patient_id == patient_id)
            ).all()
        ]
    assert any(d.get("permission") == "record:delete" for d in details)


def test_a_person_opposes_the_creation_of_their_space_and_withdraws(stack, chromium, request):
    served, services = stack
    base = served.url
    context, page, refused = context_for(chromium, request, "opponent")
    again_context, again, again_refused = context_for(chromium, request, "opponent-again")
    try:
        sign_in(page, base, OPPONENT)
        page.get_by_role("link", name="M'opposer à la création de mon espace").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "M'opposer à la création de mon espace"
        )
        check(page, "opposition")
        # Without the box: said next to it, and nothing recorded.
        page.get_by_role("button", name="M'opposer à la création de mon espace").click()
        expect(page.locator("#confirm-error")).to_have_text(
            "Cochez la case pour confirmer que vous avez compris."
        )
        check(page, "opposition-erreur")
        page.get_by_label(re.compile("pendant mon opposition ne seront pas conservés")).check()
        page.get_by_role("button", name="M'opposer à la création de mon espace").click()
        expect(page.get_by_role("status")).to_have_text("Votre opposition est enregistrée.")
        expect(page.get_by_test_id("opposition-status")).to_contain_text(
            "Vous vous êtes opposé à la création de votre espace le"
        )
        check(page, "opposition-enregistree")
        with services.session_factory() as session:
            assert len(session.scalars(select(Opposition)).all()) == 1

        # The next sign-in lands on the opposition; withdrawing it opens the way back.
        sign_in(again, base, OPPONENT)
        expect(again.get_by_test_id("opposition-status")).to_contain_text("Vous vous êtes opposé")
        again.get_by_role("button", name="Retirer mon opposition").click()
        expect(again.get_by_role("status")).to_have_text("Votre opposition est retirée.")
        again.get_by_role("link", name="Je préfère ouvrir mon espace").click()
        again.get_by_role("button", name="Ouvrir mon espace").click()
        expect(again.get_by_role("status")).to_have_text("Votre espace est ouvert.")
        assert refused == []
        assert again_refused == []
    finally:
        keep_failure(request, page, "opponent")
        keep_failure(request, again, "opponent-again")
        context.close()
        again_context.close()
    with services.session_factory() as session:
        assert session.scalars(select(Opposition)).all() == []
