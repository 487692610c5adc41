"""Throttling: the token endpoint per client and address, repeated failed authentications
per address; 429 OperationOutcome with Retry-After."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from tests.factories import DOCTOR
from vault.api.app import create_app
from vault.errors import TooManyRequests
from vault.identity.throttle import SlidingWindow, Throttle


class Clock:
    """Time that moves only when the test says so: no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def strict_app(settings, services):
    tight = settings.model_copy(
        update={"auth_failure_limit": 3, "token_rate_limit": 4, "throttle_window_seconds": 60}
    )
    return create_app(tight, services)


def client_from(app, address: str, scheme: str = "https") -> TestClient:
    return TestClient(
        app,
        base_url=f"{scheme}://testserver",
        client=(address, 50000),
        raise_server_exceptions=False,
    )


def assert_throttled(response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "throttled"


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def test_an_address_that_keeps_presenting_bad_tokens_is_throttled(strict_app, tokens):
    with (
        client_from(strict_app, "203.0.113.7") as attacker,
        client_from(strict_app, "198.51.100.2") as bystander,
    ):
        for _ in range(3):
            response = attacker.get(
                "/fhir/DocumentReference?patient=x", headers={"Authorization": "Bearer forged"}
            )
            assert response.status_code == 401
        assert_throttled(
            attacker.get(
                "/fhir/DocumentReference?patient=x", headers={"Authorization": "Bearer forged"}
            )
        )
        # While throttled, even a good token from that address is turned away unread.
        assert_throttled(attacker.get("/fhir/Patient/x", headers=tokens.professional()))
        # Another address is unaffected.
        assert bystander.get("/fhir/Patient/x", headers=tokens.professional()).status_code == 404


def test_missing_tokens_are_challenged_not_counted_as_failures(strict_app):
    with client_from(strict_app, "203.0.113.8") as caller:
        for _ in range(10):
            assert caller.get("/fhir/DocumentReference?patient=x").status_code == 401


def test_repeated_bad_client_secrets_throttle_the_token_endpoint(strict_app, services):
    with services.session_factory() as session, session.begin():
        _, secret = services.clients.register(
            session,
            "dev-tool",
            on_behalf_of=DOCTOR,
            scopes="system/DocumentReference.c",
            with_secret=True,
        )
    form = {"grant_type": "client_credentials"}
    with (
        client_from(strict_app, "203.0.113.9") as attacker,
        client_from(strict_app, "198.51.100.3") as other_address,
    ):
        for guess in range(3):
            response = attacker.post(
                "/oauth/token", data=form, headers=basic("dev-tool", f"g{guess}")
            )
            assert response.status_code == 401
        assert_throttled(
            attacker.post("/oauth/token", data=form, headers=basic("dev-tool", secret))
        )
        # The client id itself is throttled, from whatever address the guesses come.
        assert_throttled(
            other_address.post("/oauth/token", data=form, headers=basic("dev-tool", secret))
        )


def test_token_endpoint_is_rate_limited_even_for_good_requests(strict_app, services):
    with services.session_factory() as session, session.begin():
        _, secret = services.clients.register(
            session,
            "busy-tool",
            on_behalf_of=DOCTOR,
            scopes="system/DocumentReference.c",
            with_secret=True,
        )
    form = {"grant_type": "client_credentials"}
    with client_from(strict_app, "203.0.113.10") as caller:
        for _ in range(4):
            response = caller.post("/oauth/token", data=form, headers=basic("busy-tool", secret))
            assert response.status_code == 200, response.text
        assert_throttled(caller.post("/oauth/token", data=form, headers=basic("busy-tool", secret)))


def test_sliding_window_lets_a_key_act_again_once_its_oldest_event_leaves_the_window():
    clock = Clock()
    window = SlidingWindow(limit=2, window=60, clock=clock)
    window.hit("k")
    clock.now += 30
    window.hit("k")
    assert window.wait_for("k") == pytest.approx(30)
    clock.now += 30
    assert window.wait_for("k") == 0
    assert window.wait_for("other") == 0


def test_sliding_window_forgets_the_oldest_keys_beyond_its_capacity():
    clock = Clock()
    window = SlidingWindow(limit=1, window=60, clock=clock, max_keys=2)
    for key in ("a", "b", "c"):
        window.hit(key)
    # "a" was evicted to bound memory; "b" and "c" are still remembered.
    assert window.wait_for("a") == 0
    assert window.wait_for("b") > 0
    assert window.wait_for("c") > 0


def test_throttle_tells_how_long_to_wait():
    clock = Clock()
    throttle = Throttle(SlidingWindow(1, 60, clock=clock), SlidingWindow(1, 60, clock=clock))
    throttle.failed_authentication(["ip:x"])
    clock.now += 20.5
    with pytest.raises(TooManyRequests) as raised:
        throttle.guard_authentication(["ip:x"])
    assert raised.value.retry_after == 40
    throttle.token_request(["client:y"])
    with pytest.raises(TooManyRequests):
        throttle.token_request(["client:y"])
