"""External OpenID Connect issuers (FranceConnect / Pro Santé Connect style).

The end-to-end tests get their tokens from a real, independent OpenID provider -- panva's
``oidc-provider`` from npm, run with the machine's Node on loopback -- and call the vault
with them. The key-cache tests serve a JWKS from a real HTTP server on loopback."""

from __future__ import annotations

import base64
import fcntl
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from tests.access.jwks_server import JwksServer, serving
from tests.factories import create_patient, ins, patient_resource, publish
from vault.api.app import create_app
from vault.errors import ServiceUnavailable, Unauthenticated, VaultError
from vault.identity.issuers import load_issuers
from vault.identity.jwks import RemoteJwks
from vault.identity.principal import RPPS_SYSTEM, Role
from vault.identity.scopes import format_scope
from vault.identity.tokens import ClaimMapping, TokenValidator, TrustedIssuer
from vault.services import build_services

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
AUDIENCE = "urn:vault:test"
RPPS = "10003456789"
IDNPS = "8" + RPPS
PATIENT_INS = ins(41)
RESOURCE_SCOPES = (
    "user/DocumentReference.cruds user/DocumentReference.rs user/Binary.r user/Patient.cr "
    "patient/DocumentReference.rs patient/Patient.cr patient/Binary.r system/AuditEvent.rs"
)


@dataclass(frozen=True)
class Provider:
    issuer: str
    jwks_uri: str
    secrets: dict[str, str]

    def token(self, client_id: str, scope: str) -> str:
        response = httpx.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(client_id, self.secrets[client_id]),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


def _install_provider() -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are needed to run the independent OpenID provider")
    # One installer at a time when several test processes start together.
    with (PROVIDER_DIR / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=PROVIDER_DIR,
                check=True,
                capture_output=True,
                timeout=600,
            )


@contextmanager
def running_provider(workdir: Path, config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The independent OpenID provider (panva's oidc-provider on Node) run with ``config``
    on loopback; yields its issuer and JWKS address, and stops it afterwards."""
    _install_provider()
    config_path = workdir / "provider.json"
    config_path.write_text(json.dumps(config))
    config_path.chmod(0o600)
    with (workdir / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(
            [shutil.which("node") or "node", "server.mjs", str(config_path)],
            cwd=PROVIDER_DIR,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        started: dict[str, str] = {}
        reader = threading.Thread(
            target=lambda: started.update(line=process.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(60)
        if not started.get("line"):
            pytest.fail(f"oidc-provider did not start: {(workdir / 'stderr.log').read_text()}")
        issuer = json.loads(started["line"])["issuer"]
        discovery = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
        yield issuer, discovery["jwks_uri"]
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="session")
def provider(tmp_path_factory) -> Iterator[Provider]:
    _install_provider()
    workdir = tmp_path_factory.mktemp("oidc-provider")
    signing = ECKey.generate_key("P-256", private=True, auto_kid=True)
    secrets = {name: f"{name}-secret-0123456789abcdef" for name in ("cardio", "portal", "ops")}
    claims = {
        "cardio": {"vault_role": "professional", "vault_id": RPPS, "profession": "10"},
        "portal": {"vault_role": "patient", "vault_id": PATIENT_INS},
        "ops": {"vault_role": "operator", "vault_id": "ops-1"},
    }
    config = {
        "jwks": {"keys": [{**signing.as_dict(private=True), "use": "sig", "alg": "ES256"}]},
        "clients": [
            {
                "client_id": name,
                "client_secret": secret,
                "grant_types": ["client_credentials"],
                "redirect_uris": [],
                "response_types": [],
                "scope": RESOURCE_SCOPES,
                "token_endpoint_auth_method": "client_secret_basic",
                "id_token_signed_response_alg": "ES256",
            }
            for name, secret in secrets.items()
        ],
        "resource": "urn:vault",
        "resourceScope": RESOURCE_SCOPES,
        "audience": AUDIENCE,
        "extraClaims": claims,
    }
    with running_provider(workdir, config) as (issuer, jwks_uri):
        yield Provider(issuer=issuer, jwks_uri=jwks_uri, secrets=secrets)


def vault_config(provider: Provider, **overrides) -> str:
    entry = {
        "issuer": provider.issuer,
        "jwks_uri": provider.jwks_uri,
        "audience": AUDIENCE,
        "role_claim": "vault_role",
        "subject_claim": "vault_id",
        "subject_system": RPPS_SYSTEM,
    }
    entry.update(overrides)
    return json.dumps([entry])


@pytest.fixture
def oidc_client(provider, settings, services) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"oidc_issuers": vault_config(provider)})
    built = build_services(configured)
    try:
        with TestClient(create_app(configured, built), raise_server_exceptions=False) as client:
            yield client
    finally:
        built.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


# -- a real, independent OpenID provider ---------------------------------------------------


def test_professional_signed_in_at_an_openid_provider_publishes_and_reads_back(
    oidc_client, provider, tokens
):
    patient_id, _ = create_patient(oidc_client, tokens, seed=42)
    external = bearer(provider.token("cardio", "user/DocumentReference.cruds user/Binary.r"))
    stored = publish(oidc_client, external, patient_id)
    # The provider's RPPS number became the professional's IDNPS.
    assert stored["author"][0]["identifier"]["value"] == "810003456789"
    read = oidc_client.get(f"/fhir/DocumentReference/{stored['id']}", headers=external)
    assert read.status_code == 200, read.text
    # The vault's own token for the same professional sees the same document.
    mine = oidc_client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional(IDNPS)
    )
    assert mine.status_code == 200, mine.text


def test_patient_signed_in_at_an_openid_provider_opens_their_own_record(oidc_client, provider):
    external = bearer(provider.token("portal", "patient/Patient.cr patient/DocumentReference.rs"))
    created = oidc_client.post(
        "/fhir/Patient", json=patient_resource(PATIENT_INS), headers=external
    )
    assert created.status_code == 201, created.text
    patient_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]
    read = oidc_client.get(f"/fhir/Patient/{patient_id}", headers=external)
    assert read.status_code == 200, read.text


def test_provider_token_becomes_the_principal_its_claims_describe(provider):
    validator = TokenValidator(load_issuers(vault_config(provider), default_audience="vault"))
    principal = validator.validate(provider.token("cardio", "user/DocumentReference.rs"))
    assert principal.role is Role.PROFESSIONAL
    assert (principal.subject, principal.profession) == (IDNPS, "10")
    assert principal.issuer == provider.issuer
    assert principal.client_id == "cardio"
    assert [format_scope(scope) for scope in principal.scopes] == ["user/DocumentReference.rs"]


def test_provider_may_not_grant_roles_outside_its_configuration(provider):
    # Operators are the vault's own staff: an external provider asserting one is refused.
    validator = TokenValidator(load_issuers(vault_config(provider), default_audience="vault"))
    with pytest.raises(Unauthenticated, match="no role"):
        validator.validate(provider.token("ops", "system/AuditEvent.rs"))


def test_fixed_role_issuer_ignores_role_claims_in_its_tokens(provider):
    config = vault_config(provider, role="patient", role_claim="absent")
    validator = TokenValidator(load_issuers(config, default_audience="vault"))
    # The "cardio" client asserts vault_role=professional; this issuer only serves patients.
    principal = validator.validate(provider.token("cardio", "user/DocumentReference.rs"))
    assert principal.role is Role.PATIENT
    # user/ scopes mean nothing for a patient: dropped, not widened.
    assert principal.scopes == ()


def test_provider_token_for_another_audience_is_refused(provider):
    config = vault_config(provider, audience="some-other-service")
    validator = TokenValidator(load_issuers(config, default_audience="vault"))
    with pytest.raises(Unauthenticated, match="aud"):
        validator.validate(provider.token("cardio", "user/DocumentReference.rs"))


def test_tampered_provider_token_is_refused(oidc_client, provider):
    token = provider.token("portal", "patient/DocumentReference.rs")
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["vault_role"] = "professional"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = oidc_client.get(
        "/fhir/DocumentReference?patient=x", headers=bearer(f"{head}.{forged_payload}.{signature}")
    )
    assert response.status_code == 401


def test_provider_token_is_refused_by_a_vault_that_does_not_trust_the_provider(client, provider):
    response = client.get(
        "/fhir/DocumentReference?patient=x",
        headers=bearer(provider.token("cardio", "user/DocumentReference.rs")),
    )
    assert response.status_code == 401
    assert "untrusted issuer" in response.json()["issue"][0]["diagnostics"]


# -- the JWKS cache ------------------------------------------------------------------------


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    yield from serving()


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


ISSUER = "https://idp.test"


def signed(key, kid: str | None = None, **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "vault", "sub": PATIENT_INS, "role": "patient", "exp": now + 60}
    body.update(claims)
    alg = "ES256" if isinstance(key, ECKey) else "RS256"
    return jwt.encode({"alg": alg, "kid": kid or key.kid}, body, key, algorithms=[alg])


def remote_validator(url: str, clock: Clock, **mapping) -> TokenValidator:
    keys = RemoteJwks(url, max_age=3600, min_refresh_interval=60, clock=clock)
    return TokenValidator([TrustedIssuer(ISSUER, keys, "vault", ClaimMapping(**mapping))])


def test_jwks_is_fetched_once_and_not_on_every_request(jwks_server):
    key = ECKey.generate_key("P-256", private=True, auto_kid=True)
    jwks_server.publish(key)
    validator = remote_validator(jwks_server.url, Clock())
    for _ in range(5):
        assert validator.validate(signed(key)).subject == PATIENT_INS
    assert jwks_server.requests == 1


def test_jwks_is_fetched_again_for_a_key_id_it_does_not_hold(jwks_server):
    old = ECKey.generate_key("P-256", private=True, auto_kid=True)
    new = RSAKey.generate_key(2048, private=True, auto_kid=True)
    jwks_server.publish(old)
    clock = Clock()
    validator = remote_validator(jwks_server.url, clock)
    validator.validate(signed(old))
    # The provider rotates its keys; the next token names the new one.
    jwks_server.publish(old, new)
    clock.now += 61
    assert validator.validate(signed(new)).subject == PATIENT_INS
    assert jwks_server.requests == 2


def test_made_up_key_ids_cannot_make_the_vault_hammer_the_provider(jwks_server):
    key = ECKey.generate_key("P-256", private=True, auto_kid=True)
    jwks_server.publish(key)
    clock = Clock()
    validator = remote_validator(jwks_server.url, clock)
    validator.validate(signed(key))
    clock.now += 61
    for number in range(20):
        with pytest.raises(Unauthenticated):
            validator.validate(signed(key, kid=f"made-up-{number}"))
        clock.now += 1
    # One refetch in the 20 seconds, however many unknown key ids arrived.
    assert jwks_server.requests == 2


def test_cached_keys_expire_and_are_fetched_again(jwks_server):
    key = ECKey.generate_key("P-256", private=True, auto_kid=True)
    jwks_server.publish(key)
    clock = Clock()
    validator = remote_validator(jwks_server.url, clock)
    validator.validate(signed(key))
    clock.now += 3601
    validator.validate(signed(key))
    assert jwks_server.requests == 2


def test_provider_outage_keeps_the_keys_already_fetched(jwks_server):
    key = ECKey.generate_key("P-256", private=True, auto_kid=True)
    jwks_server.publish(key)
    clock = Clock()
    validator = remote_validator(jwks_server.url, clock)
    validator.validate(signed(key))
    jwks_server.up = False
    clock.now += 3601
    assert validator.validate(signed(key)).subject == PATIENT_INS


def test_unreachable_keys_are_a_transient_failure_not_an_open_door(jwks_server):
    jwks_server.up = False
    key = ECKey.generate_key("P-256", private=True, auto_kid=True)
    validator = remote_validator(jwks_server.url, Clock())
    with pytest.raises(ServiceUnavailable):
        validator.validate(signed(key))


def test_jwks_over_plain_http_is_refused_unless_on_loopback():
    with pytest.raises(VaultError, match="https"):
        RemoteJwks("http://idp.example.org/jwks")
    assert RemoteJwks("https://idp.example.org/jwks").url.startswith("https://")


# -- claim mapping and configuration -------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> ECKey:
    return ECKey.generate_key("P-256", private=True, auto_kid=True)


def static_config(key, **entry) -> str:
    return json.dumps([{"issuer": ISSUER, "jwks": {"keys": [key.as_dict(private=False)]}, **entry}])


def test_role_can_be_read_from_a_list_of_provider_roles(key):
    config = static_config(key, role_claim="realm_access.roles", role_values={"ps": "professional"})
    validator = TokenValidator(load_issuers(config, default_audience="vault"))
    token = signed(key, role=None, realm_access={"roles": ["offline", "ps"]}, sub=IDNPS)
    assert validator.validate(token).role is Role.PROFESSIONAL


def test_unmapped_provider_role_is_refused(key):
    config = static_config(key, role_values={"ps": "professional"})
    validator = TokenValidator(load_issuers(config, default_audience="vault"))
    with pytest.raises(Unauthenticated):
        validator.validate(signed(key, role="patient"))


def test_default_scope_applies_when_the_provider_issues_no_smart_scope(key):
    config = static_config(key, role="patient", default_scope="patient/DocumentReference.rs")
    validator = TokenValidator(load_issuers(config, default_audience="vault"))
    principal = validator.validate(signed(key, scope="openid profile"))
    assert [format_scope(scope) for scope in principal.scopes] == ["patient/DocumentReference.rs"]


def test_subject_can_come_from_a_nested_claim(key):
    config = static_config(key, role="patient", subject_claim="ext.ins")
    validator = TokenValidator(load_issuers(config, default_audience="vault"))
    principal = validator.validate(signed(key, sub="pairwise-abc", ext={"ins": PATIENT_INS}))
    assert principal.subject == PATIENT_INS


def test_profession_can_come_from_a_list_in_the_token(key):
    config = static_config(
        key,
        role="professional",
        subject_claim="SubjectNameID",
        profession_claim="SubjectRefPro.exercices.0.codeProfession",
    )
    validator = TokenValidator(load_issuers(config, default_audience="vault"))
    token = signed(
        key,
        SubjectNameID=IDNPS,
        SubjectRefPro={"exercices": [{"codeProfession": "60"}, {"codeProfession": "10"}]},
    )
    principal = validator.validate(token)
    assert (principal.subject, principal.profession) == (IDNPS, "60")


def test_jwks_file_is_read_at_startup(key, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    config = json.dumps([{"issuer": ISSUER, "jwks_file": str(path), "role": "patient"}])
    validator = TokenValidator(load_issuers(config, default_audience="vault"))
    assert validator.validate(signed(key)).subject == PATIENT_INS


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ("{not json", "not valid JSON"),
        ('{"issuer": "x"}', "JSON list"),
        ('[{"issuer": "https://a"}]', "exactly one of"),
        ('[{"issuer": "https://a", "jwks_uri": "https://a/j", "jwks_file": "/x"}]', "exactly one"),
        ('[{"issuer": "https://a", "jwks_uri": "https://a/j", "rolle": "patient"}]', "rolle"),
        ('[{"issuer": "https://a", "jwks_uri": "https://a/j", "role": "king"}]', "role"),
        (
            '[{"issuer": "https://a", "jwks_uri": "https://a/j", "role": "operator"}]',
            "allowed roles",
        ),
        ('[{"issuer": "https://a", "jwks_uri": "http://a.example/j"}]', "https"),
        ('[{"issuer": "https://a", "jwks": {"keys": []}}]', "no usable signing key"),
    ],
)
def test_misconfigured_issuers_stop_the_vault_at_startup(config, complaint):
    with pytest.raises(VaultError, match=complaint):
        load_issuers(config, default_audience="vault")
