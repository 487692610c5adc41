"""Helpers for the patient's space's tests: a browser-like client that keeps the session
cookie (over HTTPS, as the __Host- cookie requires), reads CSRF tokens from forms."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from vault.api.app import create_app
from vault.web.sessions import COOKIE

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
BASE = "https://testserver"


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def session_cookie(client: TestClient) -> str | None:
    return client.cookies.get(COOKIE)


def browser(app) -> Iterator[TestClient]:
    with TestClient(
        app, base_url=BASE, raise_server_exceptions=False, follow_redirects=False
    ) as client:
        yield client


def sign_in_demo(client: TestClient, account: str = "patient") -> None:
    page = client.get("/")
    assert page.status_code == 200
    response = client.post(
        "/login/demo", data={"account": account, "csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 303, response.text


def follow(client: TestClient, response, limit: int = 5):
    for _ in range(limit):
        if response.status_code not in (302, 303):
            return response
        response = client.get(response.headers["location"])
    return response


@pytest.fixture
def web(services, settings) -> Iterator[TestClient]:
    yield from browser(create_app(settings, services))


def sign_in_as(client: TestClient, principal, name: str | None = None) -> None:
    """A session for someone the demo accounts do not cover, opened by the same store the
    sign-in uses (its checks are tests/web/test_sessions.py's)."""
    from vault.web.signin import PRINCIPAL_KEY, principal_record  # noqa: PLC0415

    store = client.app.state.web_sessions
    cookie = store.create({PRINCIPAL_KEY: principal_record(principal), "name": name})
    client.cookies.set(COOKIE, cookie, domain="testserver.local")
