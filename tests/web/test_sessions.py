"""Signing in and out of the patient's space: the session cookie, its flags, a new id at
sign-in, CSRF on every form, sign-out ending the session on the server."""

from __future__ import annotations

from tests.web.support import browser, csrf_of, follow, session_cookie, sign_in_demo
from vault.api.app import create_app
from vault.services import build_services
from vault.web.sessions import COOKIE
from vault.web.signin import DEMO_PATIENT


def test_sign_in_page_offers_the_demo_accounts_under_a_demonstration_banner(web):
    page = web.get("/")
    assert page.status_code == 200
    assert 'data-testid="demo-sign-in-patient"' in page.text
    assert 'data-testid="demo-sign-in-caregiver"' in page.text
    assert "Démonstration." in page.text


def test_session_cookie_is_host_prefixed_http_only_secure_and_lax(web):
    page = web.get("/")
    header = page.headers["set-cookie"]
    assert header.startswith(f"{COOKIE}=")
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path"} <= attributes
    assert "SameSite=Lax" in header
    assert "Path=/" in header
    assert "domain" not in attributes


def test_the_browser_never_receives_a_token(web):
    sign_in_demo(web)
    home = follow(web, web.get("/"))
    cookie = session_cookie(web)
    assert cookie is not None
    # The cookie is an opaque id and key, not a JWT, and no page carries one.
    assert cookie.count(".") == 1
    assert "eyJ" not in home.text


def test_sign_in_gives_a_new_session_id_and_the_old_one_opens_nothing(web, app):
    web.get("/")
    planted = session_cookie(web)
    assert planted is not None
    sign_in_demo(web)
    signed_in = session_cookie(web)
    assert signed_in is not None
    assert signed_in != planted
    store = app.state.web_sessions if hasattr(app.state, "web_sessions") else None
    del store
    # Whoever planted the first id (session fixation) is not signed in with it.
    for attacker in browser(create_app(web.app.state.services.settings, web.app.state.services)):
        attacker.cookies.set(COOKIE, planted, domain="testserver.local")
        page = attacker.get("/")
        assert 'data-testid="demo-sign-in-patient"' in page.text
        # Whereas the new id, in any browser, is the signed-in session.
        attacker.cookies.set(COOKIE, signed_in, domain="testserver.local")
        assert attacker.get("/").headers["location"] == "/bienvenue"


def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(web):
    sign_in_demo(web)
    welcome = follow(web, web.get("/"))
    assert "Ouvrir mon espace" in welcome.text
    refused = web.post("/bienvenue", data={})
    assert refused.status_code == 403
    forged = web.post("/bienvenue", data={"csrf_token": "x" * 43})
    assert forged.status_code == 403
    # Still no record: the first visit page is what the patient sees.
    assert "Ouvrir mon espace" in follow(web, web.get("/")).text
    opened = web.post("/bienvenue", data={"csrf_token": csrf_of(welcome.text)})
    assert opened.status_code == 303
    assert "/documents" in opened.headers["location"]


def test_a_form_from_another_origin_is_refused_even_with_a_token(web):
    sign_in_demo(web)
    welcome = follow(web, web.get("/"))
    response = web.post(
        "/bienvenue",
        data={"csrf_token": csrf_of(welcome.text)},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403


def test_sign_out_ends_the_session_on_the_server(web, app):
    sign_in_demo(web)
    page = follow(web, web.get("/"))
    cookie = session_cookie(web)
    store = web.app.state.web_sessions
    assert store.exists(cookie)
    for before in browser(web.app):
        before.cookies.set(COOKIE, cookie, domain="testserver.local")
        assert before.get("/bienvenue").status_code == 200
    out = web.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303
    assert not store.exists(cookie)
    # Replaying the old cookie opens nothing.
    for replay in browser(web.app):
        replay.cookies.set(COOKIE, cookie, domain="testserver.local")
        assert 'data-testid="demo-sign-in-patient"' in replay.get("/").text
        assert replay.get("/bienvenue").status_code == 303


def test_an_idle_session_ends(web):
    sign_in_demo(web)
    store = web.app.state.web_sessions
    cookie = session_cookie(web)
    assert store.load(cookie) is not None
    original = store.clock
    store.clock = lambda: original() + store.idle
    try:
        assert store.load(cookie) is None
    finally:
        store.clock = original
    assert not store.exists(cookie)


def test_a_session_ends_at_its_absolute_lifetime_however_active(web):
    sign_in_demo(web)
    store = web.app.state.web_sessions
    cookie = session_cookie(web)
    original = store.clock
    step = store.idle / 2
    elapsed = step
    try:
        while elapsed < store.absolute:
            store.clock = lambda at=elapsed: original() + at
            assert store.load(cookie) is not None
            store.save(cookie, store.load(cookie) or {})
            elapsed += step
        store.clock = lambda: original() + store.absolute
        assert store.load(cookie) is None
    finally:
        store.clock = original


def test_a_tampered_cookie_opens_nothing(web):
    sign_in_demo(web)
    cookie = session_cookie(web)
    session_id, key = cookie.split(".")
    forged = session_id + "." + ("A" if key[0] != "A" else "B") + key[1:]
    assert web.app.state.web_sessions.load(forged) is None


def test_demo_sign_in_is_impossible_without_the_embedded_issuer(services, settings):
    off = settings.model_copy(update={"embedded_issuer": False})
    built = build_services(off)
    try:
        for client in browser(create_app(off, built)):
            page = client.get("/")
            assert "demo-sign-in" not in page.text
            # Even with the session's own CSRF token, as a page would carry it.
            token = client.app.state.web_sessions.load(session_cookie(client))["csrf"]
            response = client.post("/login/demo", data={"account": "patient", "csrf_token": token})
            assert response.status_code == 404
            assert "demo-sign-in" not in follow(client, client.get("/")).text
            assert client.get("/bienvenue").status_code == 303
    finally:
        built.close()


def test_the_demo_patient_is_who_signs_in(web):
    sign_in_demo(web)
    principal = web.app.state.services.tokens  # the same validator the API uses
    assert principal is not None
    welcome = follow(web, web.get("/"))
    assert DEMO_PATIENT.name in welcome.text


def test_ended_sessions_are_swept_when_a_new_one_is_created(web):
    sign_in_demo(web)
    store = web.app.state.web_sessions
    stale = session_cookie(web)
    original = store.clock
    try:
        store.clock = lambda: original() + store.absolute
        store._purged_at = None
        store.create({})
        assert not store.exists(stale)
    finally:
        store.clock = original
