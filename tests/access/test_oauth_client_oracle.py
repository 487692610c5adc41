"""Item 10 of issue 12: at the token endpoint, a client id that does not exist and one that
cannot authenticate this way get the same answer (and, tests/hardening/test_timing_oracles.py,
cost the same): the endpoint is no directory of registered software."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey

from tests.access.test_oauth import ask, assertion, basic, register
from vault.api.app import create_app

SECRET_CLIENT = "lab-with-secret"
KEYS_CLIENT = "lab-with-keys"
NO_SUCH_CLIENT = "lab-that-is-not"


@pytest.fixture
def https(settings, services):
    # Many refused attempts by one address in a row: past the authentication throttle,
    # which is not what this is about.
    roomy = settings.model_copy(update={"auth_failure_limit": 1000, "token_rate_limit": 1000})
    with TestClient(
        create_app(roomy, services), base_url="https://testserver", raise_server_exceptions=False
    ) as client:
        yield client


@pytest.fixture
def registered(services) -> ECKey:
    key = ECKey.generate_key("P-256", private=True, auto_kid=True)
    register(services, SECRET_CLIENT, secret=True)
    register(services, KEYS_CLIENT, keys=[key])
    return key


def _answer(response) -> tuple[int, dict, str | None]:
    return response.status_code, response.json(), response.headers.get("WWW-Authenticate")


def test_a_secret_for_an_unknown_client_is_answered_as_a_wrong_secret(https, registered):
    def with_secret(client_id: str):
        return https.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic(client_id, "guessed-secret"),
        )

    unknown = with_secret(NO_SUCH_CLIENT)
    wrong_secret = with_secret(SECRET_CLIENT)
    keys_only = with_secret(KEYS_CLIENT)

    assert unknown.status_code == 401
    assert unknown.json()["error"] == "invalid_client"
    assert _answer(unknown) == _answer(wrong_secret) == _answer(keys_only)


def test_an_assertion_for_an_unknown_client_is_answered_as_a_badly_signed_one(
    https, settings, registered
):
    token_url = f"{settings.issuer}/oauth/token"
    stranger = ECKey.generate_key("P-256", private=True, auto_kid=True)

    unknown = ask(https, assertion(stranger, token_url, NO_SUCH_CLIENT))
    wrong_key = ask(https, assertion(stranger, token_url, KEYS_CLIENT))
    secret_only = ask(https, assertion(stranger, token_url, SECRET_CLIENT))

    assert unknown.json()["error"] == "invalid_client"
    assert _answer(unknown) == _answer(wrong_key) == _answer(secret_only)


def test_the_right_credentials_still_work(https, settings, services, registered):
    token_url = f"{settings.issuer}/oauth/token"
    assert ask(https, assertion(registered, token_url, KEYS_CLIENT)).status_code == 200
