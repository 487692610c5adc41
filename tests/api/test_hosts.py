"""The vault answers only for its own names, and every absolute URL it emits starts with
VAULT_BASE_URL, whatever Host the request named: redirects, AuditEvent and checkpoint
``next`` links, ``Location`` headers."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import RedirectResponse

from tests.audit.conftest import activity
from tests.factories import document_reference
from vault.api.app import create_app
from vault.api.hosts import AllowedHostMiddleware, allowed_hosts

PUBLIC = "http://testserver"  # the tests' VAULT_BASE_URL
ALIAS = "alias.internal"


@pytest.fixture
def aliased(services, settings):
    """The vault, also reachable under ALIAS (a name the operator allowed), asked under
    ALIAS over https."""
    assert settings.base_url == PUBLIC
    published = settings.model_copy(update={"allowed_hosts": ALIAS})
    with TestClient(
        create_app(published, services), base_url=f"https://{ALIAS}", raise_server_exceptions=False
    ) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/fhir/metadata", "application/fhir+json"),
        ("/healthz", "application/problem+json"),
        ("/api/patients/me/policy", "application/problem+json"),
    ],
)
@pytest.mark.parametrize("host", ["evil.example", "testserver.evil.example", "testserver:x"])
def test_a_request_for_another_host_is_refused(client, path, media_type, host):
    response = client.get(path, headers={"Host": host})

    assert response.status_code == 400
    assert response.headers["content-type"].startswith(media_type)


@pytest.mark.parametrize("host", ["testserver", "testserver:8000", "127.0.0.1:8000", "localhost"])
def test_the_base_urls_host_and_loopback_names_are_served(client, host):
    assert client.get("/fhir/metadata", headers={"Host": host}).status_code == 200


def test_a_trailing_slash_redirect_goes_to_the_base_url(aliased):
    response = aliased.get("/fhir/metadata/", follow_redirects=False)

    assert 300 <= response.status_code < 400
    assert response.headers["location"] == f"{PUBLIC}/fhir/metadata"


def test_audit_event_links_are_on_the_base_url(aliased, tokens):
    patient_id, ins_value = activity(aliased, tokens, 1)

    page = aliased.get(
        f"/fhir/AuditEvent?patient={patient_id}&_count=1", headers=tokens.patient(ins_value)
    ).json()

    links = {link["relation"]: link["url"] for link in page["link"]}
    assert links["self"].startswith(f"{PUBLIC}/fhir/AuditEvent?")
    assert links["next"].startswith(f"{PUBLIC}/fhir/AuditEvent?")
    assert ALIAS not in str(page)


def test_checkpoint_next_links_are_on_the_base_url(aliased, tokens, services):
    for seed in (1, 2):
        activity(aliased, tokens, seed, documents=1)
        services.audit_log.checkpoints.make(services.session_factory)

    page = aliased.get("/audit/checkpoints?_count=1", headers=tokens.operator()).json()

    assert page["next"].startswith(f"{PUBLIC}/audit/checkpoints?")


def test_locations_are_on_the_base_url(aliased, tokens):
    patient_id, _ = activity(aliased, tokens, 1, documents=1)
    response = aliased.post(
        "/fhir/DocumentReference",
        json=document_reference({"reference": f"Patient/{patient_id}"}, b"%PDF-1.7 other"),
        headers=tokens.professional(),
    )

    assert response.status_code == 201, response.text
    assert response.headers["location"].startswith(f"{PUBLIC}/fhir/DocumentReference/")


def test_a_redirect_to_another_site_is_left_alone(settings):
    """Only redirects built from the request's Host are moved onto the base URL: one to an
    identity provider keeps its address."""
    inner = FastAPI()

    @inner.get("/away")
    def away() -> RedirectResponse:
        return RedirectResponse("https://idp.example.net/authorize?x=1")

    inner.add_middleware(
        AllowedHostMiddleware, base_url=settings.issuer, allowed=allowed_hosts(settings)
    )
    with TestClient(inner) as plain:
        response = plain.get("/away", follow_redirects=False)
    assert response.headers["location"] == "https://idp.example.net/authorize?x=1"
