"""``/oauth/token``: SMART Backend Services for professional software, over HTTP(S) as the
software would call it, with real signed client assertions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from typer.testing import CliRunner

from tests.access.jwks_server import JwksServer, serving
from tests.factories import DOCTOR, create_patient, publish
from vault.api.app import create_app
from vault.cli import app as cli
from vault.errors import BadRequest
from vault.identity.oauth import ASSERTION_TYPE
from vault.identity.principal import Role
from vault.identity.scopes import format_scope
from vault.models import OAuthClient, UsedClientAssertion
from vault.services import build_services
from vault.settings import get_settings

CLIENT = "lab-system"


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", private=True, auto_kid=True)


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, private=True, auto_kid=True)


@pytest.fixture
def https(app):
    """The token endpoint answers over TLS (or on loopback) only, as OAuth 2 requires."""
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def token_url(settings) -> str:
    return f"{settings.issuer}/oauth/token"


def register(services, client_id=CLIENT, *, keys=(), scopes=None, secret=False, jwks_url=None):
    jwks = {"keys": [key.as_dict(private=False) for key in keys]} if keys else None
    with services.session_factory() as session, session.begin():
        _, generated = services.clients.register(
            session,
            client_id,
            on_behalf_of=DOCTOR,
            scopes=scopes or "system/DocumentReference.crus system/Binary.r system/Patient.cr",
            jwks=jwks,
            jwks_url=jwks_url,
            with_secret=secret,
        )
    return generated


def assertion(key, token_url, client_id=CLIENT, *, alg=None, lifetime=120, **claims):
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    alg = alg or ("ES256" if isinstance(key, ECKey) else "RS256")
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, body, key, algorithms=[alg])


def ask(client, signed, scope="system/DocumentReference.c"):
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
    }
    if scope is not None:
        form["scope"] = scope
    return client.post("/oauth/token", data=form)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def refused_client(response, status=(400, 401), because: str = "") -> None:
    assert response.status_code in status, response.text
    assert response.json()["error"] == "invalid_client"
    assert because in response.json().get("error_description", ""), response.text


# -- the SMART Backend Services flow ------------------------------------------------------


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_software_with_a_signed_assertion_gets_a_token_that_acts_for_its_professional(
    https, services, token_url, ec_key, rsa_key, kind
):
    key = ec_key if kind == "ec" else rsa_key
    register(services, keys=[key])
    response = ask(https, assertion(key, token_url), scope="system/DocumentReference.cr")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["scope"] == "system/DocumentReference.cr"
    assert 0 < body["expires_in"] <= 300

    principal = services.tokens.validate(body["access_token"])
    assert principal.role is Role.SOFTWARE
    assert (principal.subject, principal.client_id) == (CLIENT, CLIENT)
    assert principal.on_behalf_of == DOCTOR
    assert [format_scope(scope) for scope in principal.scopes] == ["system/DocumentReference.cr"]


def test_issued_token_pushes_a_document_that_its_professional_then_reads(
    https, client, services, tokens, token_url, ec_key
):
    register(services, keys=[ec_key])
    issued = ask(https, assertion(ec_key, token_url), scope="system/DocumentReference.cr")
    software = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    patient_id, _ = create_patient(client, tokens, seed=21)
    stored = publish(client, software, patient_id)
    assert stored["author"][0]["identifier"]["value"] == DOCTOR
    read = client.get(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional())
    assert read.status_code == 200, read.text


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    yield from serving()


def test_software_publishing_its_keys_at_a_url_gets_a_token(
    https, services, token_url, ec_key, jwks_server
):
    jwks_server.publish(ec_key)
    register(services, jwks_url=jwks_server.url)
    for _ in range(3):
        assert ask(https, assertion(ec_key, token_url)).status_code == 200
    # Fetched once, then cached.
    assert jwks_server.requests == 1


def test_without_a_scope_parameter_the_registered_scopes_are_granted(
    https, services, token_url, ec_key
):
    register(services, keys=[ec_key], scopes="system/DocumentReference.c system/Binary.r")
    response = ask(https, assertion(ec_key, token_url), scope=None)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/DocumentReference.c system/Binary.r"


def test_granted_scopes_never_exceed_the_registered_ones(https, services, token_url, ec_key):
    register(services, keys=[ec_key], scopes="system/DocumentReference.cr system/Binary.r")
    response = ask(
        https,
        assertion(ec_key, token_url),
        scope="system/*.cruds system/Patient.c user/*.cruds patient/*.cruds openid",
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/DocumentReference.cr system/Binary.r"
    principal = services.tokens.validate(response.json()["access_token"])
    allowed = {format_scope(scope) for scope in principal.scopes}
    assert allowed == {"system/DocumentReference.cr", "system/Binary.r"}


def test_asking_only_for_scopes_never_registered_is_invalid_scope(
    https, services, token_url, ec_key
):
    register(services, keys=[ec_key], scopes="system/DocumentReference.c")
    response = ask(https, assertion(ec_key, token_url), scope="system/AuditEvent.rs")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_client_secret_basic_works_for_development(https, services):
    secret = register(services, secret=True, scopes="system/DocumentReference.c")
    response = https.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=basic(CLIENT, secret)
    )
    assert response.status_code == 200, response.text
    assert services.tokens.validate(response.json()["access_token"]).client_id == CLIENT


def test_wrong_client_secret_is_refused(https, services):
    register(services, secret=True)
    response = https.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(CLIENT, "guessed-secret"),
    )
    refused_client(response, status=(401,))
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_secret_is_refused_for_a_client_registered_with_keys_only(https, services, ec_key):
    register(services, keys=[ec_key])
    response = https.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=basic(CLIENT, "x")
    )
    refused_client(response)


def test_unreadable_basic_credentials_are_refused(https, services):
    register(services, secret=True)
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "Basic eA=="):
        response = https.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": header},
        )
        refused_client(response, status=(401,))


# -- refusals ------------------------------------------------------------------------------


def test_replayed_client_assertion_is_refused(https, services, token_url, ec_key):
    register(services, keys=[ec_key])
    signed = assertion(ec_key, token_url)
    assert ask(https, signed).status_code == 200
    refused_client(ask(https, signed), because="already used")


def test_assertion_jti_is_remembered_until_it_expires(https, services, token_url, ec_key):
    register(services, keys=[ec_key])
    jti = f"once-{uuid.uuid4()}"
    assert ask(https, assertion(ec_key, token_url, jti=jti)).status_code == 200
    with services.session_factory() as session:
        used = session.get(UsedClientAssertion, (CLIENT, jti))
    assert used is not None
    # Refused even in a fresh assertion (new signature) that reuses the id.
    refused_client(ask(https, assertion(ec_key, token_url, jti=jti)), because="already used")


def test_assertion_signed_by_an_unregistered_key_is_refused(https, services, token_url, ec_key):
    register(services, keys=[ec_key])
    impostor = ECKey.generate_key("P-256", private=True)
    impostor_with_kid = ECKey.import_key({**impostor.as_dict(private=True), "kid": ec_key.kid})
    refused_client(ask(https, assertion(impostor_with_kid, token_url)), because="registered key")


def test_expired_assertion_is_refused(https, services, token_url, ec_key):
    register(services, keys=[ec_key])
    now = int(time.time())
    refused_client(
        ask(https, assertion(ec_key, token_url, iat=now - 600, exp=now - 60)), because="exp"
    )


def test_assertion_living_longer_than_five_minutes_is_refused(https, services, token_url, ec_key):
    register(services, keys=[ec_key])
    refused_client(ask(https, assertion(ec_key, token_url, lifetime=3600)), because="five minutes")


def test_assertion_not_yet_valid_is_refused(https, services, token_url, ec_key):
    register(services, keys=[ec_key])
    refused_client(
        ask(https, assertion(ec_key, token_url, nbf=int(time.time()) + 120)), because="nbf"
    )


def test_assertion_for_another_audience_is_refused(https, services, token_url, ec_key):
    register(services, keys=[ec_key])
    refused_client(
        ask(https, assertion(ec_key, "https://other.example/oauth/token")), because="aud"
    )
    refused_client(
        ask(https, assertion(ec_key, token_url.removesuffix("/oauth/token"))), because="aud"
    )


def test_assertion_whose_issuer_is_not_the_client_is_refused(https, services, token_url, ec_key):
    register(services, keys=[ec_key])
    register(services, "other-client", keys=[ec_key])
    refused_client(ask(https, assertion(ec_key, token_url, iss="other-client")), because="iss")


@pytest.mark.parametrize("missing", ["jti", "exp", "aud", "iss", "sub"])
def test_assertion_missing_a_required_claim_is_refused(https, services, token_url, ec_key, missing):
    register(services, keys=[ec_key])
    refused_client(ask(https, assertion(ec_key, token_url, **{missing: None})))


def test_assertion_from_an_unknown_client_is_refused(https, services, token_url, ec_key):
    refused_client(ask(https, assertion(ec_key, token_url, client_id="nobody")))


def test_unsigned_assertion_is_refused(https, services, token_url, ec_key):
    register(services, keys=[ec_key])
    signed = assertion(ec_key, token_url)
    _, payload, _ = signed.split(".")
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    refused_client(ask(https, f"{header}.{payload}."), because="registered key")


def test_assertion_hmac_signed_with_the_registered_public_key_is_refused(
    https, services, token_url, ec_key
):
    register(services, keys=[ec_key])
    public = json.dumps(ec_key.as_dict(private=False)).encode()
    _, payload, _ = assertion(ec_key, token_url).split(".")
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "kid": ec_key.kid}).encode()
    ).rstrip(b"=")
    signing_input = header + b"." + payload.encode()
    signature = base64.urlsafe_b64encode(hmac.new(public, signing_input, hashlib.sha256).digest())
    refused_client(
        ask(https, f"{signing_input.decode()}.{signature.rstrip(b'=').decode()}"),
        because="registered key",
    )


@pytest.mark.parametrize(
    "garbage", ["x", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.W10.c2ln", "e30.e30.", "x" * 60_000]
)
def test_malformed_assertion_is_refused(https, services, ec_key, garbage):
    register(services, keys=[ec_key])
    refused_client(ask(https, garbage))


def test_assertion_kid_with_odd_characters_is_refused_cleanly(https, services, token_url, ec_key):
    register(services, keys=[ec_key])
    odd = ECKey.import_key({**ec_key.as_dict(private=True), "kid": 'x"\\\n\u00e9'})
    refused_client(ask(https, assertion(odd, token_url)))


def test_only_client_credentials_is_supported(https, services):
    secret = register(services, secret=True)
    response = https.post(
        "/oauth/token", data={"grant_type": "password"}, headers=basic(CLIENT, secret)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_token_request_must_be_a_form(https):
    response = https.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_repeated_parameters_are_refused(https):
    response = https.post(
        "/oauth/token",
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_oversized_token_request_is_refused(https):
    response = https.post(
        "/oauth/token",
        content=b"grant_type=client_credentials&x=" + b"a" * 70_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


def test_token_endpoint_refuses_plain_http_from_afar(app, services, ec_key, token_url):
    register(services, keys=[ec_key])
    # Plain http, from a client that is not on loopback (TestClient's "testclient").
    with TestClient(app, base_url="http://testserver") as plain:
        response = ask(plain, assertion(ec_key, token_url))
    assert response.status_code == 400
    assert response.json()["error"] == "insecure_transport"


# -- registration ------------------------------------------------------------------------


def test_registering_private_key_material_is_refused(services, ec_key):
    with services.session_factory() as session, pytest.raises(BadRequest):
        services.clients.register(
            session,
            CLIENT,
            on_behalf_of=DOCTOR,
            scopes="system/DocumentReference.c",
            jwks={"keys": [ec_key.as_dict(private=True)]},
        )


@pytest.mark.parametrize("scope", ["user/*.cruds", "patient/DocumentReference.r", "openid", ""])
def test_software_can_only_be_registered_for_system_scopes(services, ec_key, scope):
    with services.session_factory() as session, pytest.raises(BadRequest):
        services.clients.register(
            session,
            CLIENT,
            on_behalf_of=DOCTOR,
            scopes=scope,
            jwks={"keys": [ec_key.as_dict(private=False)]},
        )


def test_client_secret_is_stored_only_as_a_salted_hash(services):
    secret = register(services, secret=True)
    with services.session_factory() as session:
        row = session.get(OAuthClient, CLIENT)
    assert row.secret_hash.startswith("scrypt$")
    assert secret not in row.secret_hash


def test_vault_clients_add_registers_software_that_then_gets_tokens(
    https, services, settings, token_url, ec_key, tmp_path, monkeypatch
):
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [ec_key.as_dict(private=False)]}))
    monkeypatch.setenv("VAULT_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        added = runner.invoke(
            cli,
            [
                "clients", "add", "hospital-sender", "--on-behalf-of", DOCTOR,
                "--scope", "system/DocumentReference.c", "--jwks-file", str(jwks_file),
            ],
        )  # fmt: skip
        duplicate = runner.invoke(
            cli,
            ["clients", "add", "hospital-sender", "--on-behalf-of", DOCTOR, "--secret"],
        )
        listed = runner.invoke(cli, ["clients", "list"])
    finally:
        get_settings.cache_clear()
    assert added.exit_code == 0, added.output
    assert added.stdout.strip() == "hospital-sender"
    assert duplicate.exit_code == 1
    assert "already registered" in duplicate.stderr
    assert "hospital-sender" in listed.stdout

    response = ask(https, assertion(ec_key, token_url, client_id="hospital-sender"))
    assert response.status_code == 200, response.text


def test_vault_clients_add_with_secret_prints_it_once(https, services, settings, monkeypatch):
    monkeypatch.setenv("VAULT_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    try:
        added = CliRunner().invoke(
            cli, ["clients", "add", "dev-tool", "--on-behalf-of", DOCTOR, "--secret"]
        )
    finally:
        get_settings.cache_clear()
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip()
    response = https.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic("dev-tool", secret),
    )
    assert response.status_code == 200, response.text


# -- discovery and the embedded issuer switched off --------------------------------------


def test_smart_configuration_describes_the_token_endpoint(client, settings):
    document = client.get("/.well-known/smart-configuration").json()
    assert document["token_endpoint"] == f"{settings.issuer}/oauth/token"
    assert "private_key_jwt" in document["token_endpoint_auth_methods_supported"]
    assert document["grant_types_supported"] == ["client_credentials"]
    assert set(document["token_endpoint_auth_signing_alg_values_supported"]) == {
        "RS256",
        "ES256",
    }
    assert "permission-v2" in document["capabilities"]
    assert "system/DocumentReference.c" in document["scopes_supported"]


def test_with_the_embedded_issuer_off_nothing_is_signed_by_the_vault(
    services, settings, monkeypatch
):
    off = settings.model_copy(update={"embedded_issuer": False})
    built = build_services(off)
    try:
        with TestClient(create_app(off, built), base_url="https://testserver") as client:
            assert client.get("/.well-known/jwks.json").status_code == 404
            response = client.post("/oauth/token", data={"grant_type": "client_credentials"})
            assert response.status_code == 404
            assert response.json()["resourceType"] == "OperationOutcome"
            assert "token_endpoint" not in client.get("/.well-known/smart-configuration").json()
            # Tokens it minted before are no longer accepted either.
            old = services.issuer.mint("patient", "185077512345653")
            answer = client.get(
                "/fhir/DocumentReference?patient=x", headers={"Authorization": f"Bearer {old}"}
            )
            assert answer.status_code == 401
    finally:
        built.close()

    monkeypatch.setenv("VAULT_EMBEDDED_ISSUER", "false")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["token", "--role", "patient", "--sub", "1"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "embedded issuer is off" in result.stderr


FORM_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


@examples(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    form=st.dictionaries(
        st.sampled_from(
            ["grant_type", "scope", "client_id", "client_assertion_type", "client_assertion"]
        ),
        FORM_TEXT,
    ),
    authorization=st.one_of(
        st.none(),
        # What an HTTP client can put in a header: visible ASCII.
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(
            lambda text: f"Basic {text}"
        ),
    ),
)
def test_no_token_request_ever_gets_a_server_error(https, form, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = https.post("/oauth/token", data=form, headers=headers)
    assert response.status_code < 500, response.text
