"""Authentication is on by default: every route of the app outside the public list refuses
a request that carries no valid token. The walk covers routes added later without anyone
having to remember this file."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.routing import Mount

from vault.api.app import PUBLIC_PATHS, create_app
from vault.api.deps import authenticate
from vault.http.deps import declared
from vault.web.deps import signed_in
from vault.web.routes import PUBLIC_PATHS as SPACE_PUBLIC_PATHS
from vault.web.routes import router as space_router

PARAMETER = re.compile(r"\{[^}]+\}")


def concrete(path: str) -> str:
    # "1" reads as a valid value whatever the parameter's type.
    return PARAMETER.sub("1", path)


def routes(app) -> list:
    """Every route the app serves: app.routes holds included routers, not their routes."""
    return list(iter_route_contexts(app.routes))


# The patient's space is guarded by a session, not a bearer token (tests/web).
SPACE_PATHS = frozenset(route.path for route in space_router.routes)


def protected(app) -> list[tuple[str, str]]:
    calls = []
    for route in routes(app):
        if route.path in SPACE_PATHS:
            continue
        if isinstance(route.original_route, Mount):
            if route.path not in PUBLIC_PATHS:
                calls.append(("GET", f"{route.path}/1"))
            continue
        if route.path in PUBLIC_PATHS:
            continue
        methods = route.methods or {"GET"}
        calls.extend((method, concrete(route.path)) for method in sorted(methods))
    return calls


@pytest.fixture
def walker(settings, services):
    # A throttle that never trips: the walk presents many bad tokens from one address.
    lenient = settings.model_copy(update={"auth_failure_limit": 100_000})
    app = create_app(lenient, services)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield app, client


def forged_token(services) -> str:
    impostor = ECKey.generate_key("P-256", private=True)
    claims = {
        "iss": services.issuer.issuer,
        "aud": services.issuer.audience,
        "sub": "810003456789",
        "role": "professional",
        "scope": "user/*.cruds",
        "exp": 2**31,
    }
    return jwt.encode({"alg": "ES256", "kid": services.issuer.kid}, claims, impostor)


def test_the_walk_finds_the_vaults_routes(walker):
    app, _ = walker
    paths = {path for _, path in protected(app)}
    for expected in ("/fhir", "/fhir/DocumentReference", "/fhir/Binary/1", "/fhir/Patient"):
        assert expected in paths


def test_every_route_outside_the_public_list_refuses_a_request_without_token(walker):
    app, client = walker
    answered = {
        (method, path): client.request(method, path).status_code for method, path in protected(app)
    }
    assert {call: status for call, status in answered.items() if status != 401} == {}


def test_every_route_outside_the_public_list_refuses_invalid_tokens(walker, services):
    app, client = walker
    bad_tokens = {
        "forged": forged_token(services),
        "expired": services.issuer.mint("professional", "810003456789", ttl=-3600),
        "garbage": "not.a.token",
    }
    for name, token in bad_tokens.items():
        headers = {"Authorization": f"Bearer {token}"}
        answered = {
            (method, path): client.request(method, path, headers=headers).status_code
            for method, path in protected(app)
        }
        assert {call: status for call, status in answered.items() if status != 401} == {}, name


def test_refusals_carry_a_bearer_challenge(walker):
    app, client = walker
    for method, path in protected(app):
        response = client.request(method, path)
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), (method, path)


def test_every_route_outside_the_public_list_depends_on_authentication(walker):
    app, _ = walker

    def calls(dependant) -> set:
        found = {dependant.call}
        for sub in dependant.dependencies:
            found |= calls(sub)
        return found

    unguarded = [
        route.path
        for route in routes(app)
        if isinstance(route.original_route, APIRoute)
        and route.path not in PUBLIC_PATHS
        and route.path not in SPACE_PATHS
        and authenticate not in calls(route.dependant)
    ]
    assert unguarded == []


def test_every_page_of_the_space_outside_its_public_list_depends_on_a_signed_in_session(walker):
    app, client = walker

    def calls(dependant) -> set:
        found = {dependant.call}
        for sub in dependant.dependencies:
            found |= calls(sub)
        return found

    pages = [route for route in routes(app) if route.path in SPACE_PATHS]
    assert len(pages) > 10
    unguarded = [
        route.path
        for route in pages
        if route.path not in SPACE_PUBLIC_PATHS and signed_in not in calls(route.dependant)
    ]
    assert unguarded == []
    # Without a session, each answers with the way to sign in (or, for a form, a refusal).
    for route in pages:
        if route.path in SPACE_PUBLIC_PATHS:
            continue
        for method in sorted(route.methods or {"GET"}):
            status = client.request(
                method, concrete(route.path), follow_redirects=False
            ).status_code
            assert status in (303, 403), (method, route.path, status)


def test_public_routes_answer_without_a_token(walker):
    app, client = walker
    public = [
        route
        for route in routes(app)
        if route.path in PUBLIC_PATHS and "GET" in (route.methods or ())
    ]
    assert public
    for route in public:
        assert client.get(route.path).status_code != 401, route.path


def test_every_route_declares_what_it_requires(walker):
    """Each route says beside its path which permissions it asks the decision for, or why it
    needs none (vault/http/deps.py ``requires`` and ``public``): the route table reads as an
    access table, and a new route cannot be added without saying."""
    app, _ = walker
    undeclared = []
    misplaced = []
    for route in routes(app):
        if not isinstance(route.original_route, APIRoute):
            continue
        # The patient's space has its own public list (sign-in, its assets).
        public = SPACE_PUBLIC_PATHS if route.path in SPACE_PATHS else PUBLIC_PATHS
        requirement = declared(route.original_route.dependencies)
        if requirement is None:
            undeclared.append((sorted(route.methods or ()), route.path))
        elif requirement.public != (route.path in public):
            misplaced.append(route.path)
    assert undeclared == []
    assert misplaced == []
    # The walk saw the API and the space both.
    assert any(route.path in SPACE_PATHS for route in routes(app))


def test_the_openapi_description_says_what_each_operation_requires(walker):
    _, client = walker
    document = client.get("/openapi.json").json()
    silent = [
        (method, path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "x-vault-permissions" not in operation
    ]
    assert silent == []
    read = document["paths"]["/fhir/DocumentReference/{document_id}"]["get"]
    assert read["x-vault-permissions"] == ["document:read"]
    assert "`document:read`" in read["description"]
