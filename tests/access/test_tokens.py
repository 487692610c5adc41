"""Bearer tokens: every role's happy path, and every way a token is refused (401 with a
WWW-Authenticate challenge, never a 500, never a partial answer)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from typer.testing import CliRunner

from tests.factories import DOCTOR, create_patient, publish
from vault.cli import app as cli
from vault.errors import Unauthenticated
from vault.identity.principal import RPPS_SYSTEM, Role
from vault.identity.tokens import (
    MAX_TOKEN_BYTES,
    VERIFIED_TOKEN_SECONDS,
    EmbeddedIssuer,
    TokenValidator,
)
from vault.settings import get_settings

PATIENT_INS = "185077512345653"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


NOT_UTF8 = f"{b64(bytes([0xFF, 0xFE]))}.{b64(bytes([0xFF]))}.c2ln"


@pytest.fixture(scope="module")
def props(tmp_path_factory) -> tuple[EmbeddedIssuer, TokenValidator]:
    """An issuer and validator of their own for the property tests: hypothesis runs them many
    times over, and they need no database."""
    issuer = EmbeddedIssuer(tmp_path_factory.mktemp("props"), "http://props.test", "vault")
    return issuer, TokenValidator([issuer.trusted()])


def compact(header: dict, claims: dict, signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


def claims_for(issuer: EmbeddedIssuer, **overrides) -> dict:
    now = int(time.time())
    claims = {
        "iss": issuer.issuer,
        "aud": issuer.audience,
        "sub": PATIENT_INS,
        "role": "patient",
        "scope": "patient/*.cruds",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "t-1",
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def sign_es256(key: ECKey, claims: dict, kid: str | None = None) -> str:
    return jwt.encode({"alg": "ES256", "kid": kid or key.kid}, claims, key, algorithms=["ES256"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(response, because: str = "") -> None:
    assert response.status_code == 401, response.text
    assert because in response.json()["issue"][0]["diagnostics"], response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "login"


# -- who gets in ----------------------------------------------------------------------------


def test_patient_token_opens_and_reads_own_record(client, tokens):
    patient_id, ins_value = create_patient(client, tokens, seed=3)
    response = client.get(f"/fhir/Patient/{patient_id}", headers=tokens.patient(ins_value))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == patient_id


def test_professional_token_publishes_and_reads_back_what_they_authored(client, tokens):
    patient_id, _ = create_patient(client, tokens, seed=4)
    stored = publish(client, tokens.professional(), patient_id)
    read = client.get(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional())
    assert read.status_code == 200, read.text


def test_software_token_publishes_on_behalf_of_its_professional(client, tokens):
    patient_id, _ = create_patient(client, tokens, seed=5)
    stored = publish(client, tokens.software(on_behalf_of=DOCTOR), patient_id)
    # The document is the professional's: they read it with their own token.
    read = client.get(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional())
    assert read.status_code == 200, read.text


@pytest.mark.parametrize("role", ["caregiver", "operator"])
def test_caregiver_and_operator_tokens_authenticate_and_meet_the_policy_not_the_door(
    client, tokens, role
):
    patient_id, _ = create_patient(client, tokens, seed=6)
    headers = tokens.caregiver() if role == "caregiver" else tokens.operator()
    response = client.get(f"/fhir/Patient/{patient_id}", headers=headers)
    # Authenticated: what they may see is the policy's call (404 hides the record), not 401.
    assert response.status_code != 401, response.text


def test_each_role_becomes_the_principal_its_claims_describe(services):
    issuer, validator = services.issuer, services.tokens
    patient = validator.validate(issuer.mint("patient", PATIENT_INS))
    assert (patient.role, patient.subject) == (Role.PATIENT, PATIENT_INS)
    assert patient.issuer == issuer.issuer
    assert patient.token_id

    professional = validator.validate(
        issuer.mint("professional", DOCTOR, profession="60", specialty="SM26")
    )
    assert (professional.role, professional.subject) == (Role.PROFESSIONAL, DOCTOR)
    assert (professional.profession, professional.specialty) == ("60", "SM26")
    assert professional.acting_professional == DOCTOR

    software = validator.validate(issuer.mint("software", "lab-system", on_behalf_of=DOCTOR))
    assert (software.role, software.client_id, software.on_behalf_of) == (
        Role.SOFTWARE,
        "lab-system",
        DOCTOR,
    )
    assert software.acting_professional == DOCTOR

    caregiver = validator.validate(issuer.mint("caregiver", "caregiver-7"))
    assert (caregiver.role, caregiver.subject) == (Role.CAREGIVER, "caregiver-7")

    operator = validator.validate(issuer.mint("operator", "ops-1"))
    assert (operator.role, operator.subject) == (Role.OPERATOR, "ops-1")
    assert operator.acting_professional is None


def test_bare_rpps_number_is_the_same_professional_as_their_idnps(services):
    token = services.issuer.mint("professional", "10003456789", extra={"id_system": RPPS_SYSTEM})
    assert services.tokens.validate(token).subject == "810003456789"


def test_token_printed_by_vault_token_command_is_accepted(services, settings, monkeypatch):
    monkeypatch.setenv("VAULT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("VAULT_BASE_URL", settings.base_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli, ["token", "--role", "professional", "--sub", DOCTOR, "--profession", "21"]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    principal = services.tokens.validate(result.stdout.strip())
    assert (principal.subject, principal.profession) == (DOCTOR, "21")


# -- who does not ---------------------------------------------------------------------------


def test_request_without_token_is_challenged(client):
    assert_refused(client.get("/fhir/DocumentReference?patient=x"))


def test_basic_credentials_are_not_a_bearer_token(client):
    response = client.get(
        "/fhir/DocumentReference?patient=x", headers={"Authorization": "Basic eDp5"}
    )
    assert_refused(response)


def test_forged_signature_is_refused(client, services):
    issuer = services.issuer
    impostor = ECKey.generate_key("P-256", private=True)
    # Same issuer, same kid: only the signature tells them apart.
    token = sign_es256(impostor, claims_for(issuer), kid=issuer.kid)
    assert_refused(
        client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)), "bad_signature"
    )


def test_tampered_claims_break_the_signature(client, services):
    token = services.issuer.mint("patient", PATIENT_INS)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "operator"
    forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    assert_refused(client.get("/fhir/DocumentReference?patient=x", headers=bearer(forged)))


def test_expired_token_is_refused_beyond_the_clock_skew(client, services):
    token = services.issuer.mint("patient", PATIENT_INS, ttl=-31 - 5)
    assert_refused(client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)), "(exp)")


def test_token_not_yet_valid_is_refused_beyond_the_clock_skew(client, services):
    later = int(time.time()) + 120
    token = services.issuer.mint("patient", PATIENT_INS, extra={"nbf": later})
    assert_refused(client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)), "(nbf)")


def test_token_issued_in_the_future_is_refused(client, services):
    token = services.issuer.mint("patient", PATIENT_INS, extra={"iat": int(time.time()) + 600})
    assert_refused(client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)), "(iat)")


def test_clock_skew_within_thirty_seconds_is_tolerated(services):
    # Expired 10 s ago by the issuer's clock: within the allowed skew.
    token = services.issuer.mint("patient", PATIENT_INS, ttl=-10)
    assert services.tokens.validate(token).subject == PATIENT_INS


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class SwappableKeys:
    """An issuer's published keys, which the issuer may withdraw."""

    def __init__(self, keys) -> None:
        self.keys = keys

    def key_set(self, kid):
        return self.keys


def remembering_validator(tmp_path) -> tuple[EmbeddedIssuer, TokenValidator, Clock, SwappableKeys]:
    issuer = EmbeddedIssuer(tmp_path / "cache", "http://cache.test", "vault")
    keys = SwappableKeys(issuer.trusted().keys.key_set(None))
    trusted = dataclasses.replace(issuer.trusted(), keys=keys)
    clock = Clock()
    return issuer, TokenValidator([trusted], clock=clock), clock, keys


def test_a_token_verified_once_is_refused_once_it_expires(tmp_path):
    issuer, validator, clock, _ = remembering_validator(tmp_path)
    token = issuer.mint("patient", PATIENT_INS, ttl=45)
    assert validator.validate(token).subject == PATIENT_INS
    clock.now += 45 + 29
    assert validator.validate(token).subject == PATIENT_INS
    clock.now += 2
    with pytest.raises(Unauthenticated, match="exp"):
        validator.validate(token)


def test_a_token_altered_after_it_was_verified_is_verified_again_and_refused(tmp_path):
    issuer, validator, _, _ = remembering_validator(tmp_path)
    token = issuer.mint("patient", PATIENT_INS)
    validator.validate(token)
    head, body, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for altered in (f"{head}.{body}.{flipped}", f"{head}.{body}.", f"{token} "):
        with pytest.raises(Unauthenticated):
            validator.validate(altered)
    assert validator.validate(token).subject == PATIENT_INS


def test_a_withdrawn_signing_key_stops_being_honoured_within_a_minute(tmp_path):
    issuer, validator, clock, keys = remembering_validator(tmp_path)
    token = issuer.mint("patient", PATIENT_INS, ttl=3600)
    validator.validate(token)
    other = EmbeddedIssuer(tmp_path / "other", issuer.issuer, issuer.audience)
    keys.keys = other.trusted().keys.key_set(None)
    clock.now += VERIFIED_TOKEN_SECONDS - 1
    assert validator.validate(token).subject == PATIENT_INS
    clock.now += 1
    with pytest.raises(Unauthenticated):
        validator.validate(token)


def test_token_for_another_audience_is_refused(client, services, settings):
    # The vault's own key and issuer, but meant for another service.
    other = EmbeddedIssuer(settings.data_dir, services.issuer.issuer, "another-service")
    token = other.mint("patient", PATIENT_INS)
    assert_refused(client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)), "(aud)")


def test_token_from_an_untrusted_issuer_is_refused(client, tmp_path):
    stranger = EmbeddedIssuer(tmp_path, "https://idp.example.org", "vault")
    token = stranger.mint("operator", "ops-1")
    assert_refused(
        client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)), "untrusted issuer"
    )


def test_token_claiming_a_trusted_issuer_but_signed_by_another_is_refused(
    client, services, tmp_path
):
    stranger = EmbeddedIssuer(tmp_path, services.issuer.issuer, "vault")
    token = stranger.mint("operator", "ops-1")
    response = client.get("/fhir/DocumentReference?patient=x", headers=bearer(token))
    assert_refused(response, "Invalid access token")


def test_unsigned_alg_none_token_is_refused(client, services):
    for alg in ("none", "None", "NONE"):
        token = compact({"alg": alg, "typ": "JWT"}, claims_for(services.issuer))
        assert_refused(
            client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)), "algorithm"
        )
        # Some libraries also accept a dangling signature segment.
        assert_refused(
            client.get("/fhir/DocumentReference?patient=x", headers=bearer(token + "c2ln"))
        )


def test_hs256_signed_with_the_published_public_key_is_refused(client, services):
    """Algorithm confusion: an attacker HMACs a token with the public key the vault
    publishes, hoping the vault verifies HS256 with that same key."""
    public_jwk = client.get("/.well-known/jwks.json").json()["keys"][0]
    public_pem = ECKey.import_key(public_jwk).as_pem(private=False)
    claims = claims_for(services.issuer, role="operator", sub="ops-1")
    for secret in (public_pem, json.dumps(public_jwk).encode()):
        header = {"alg": "HS256", "typ": "JWT", "kid": public_jwk["kid"]}
        signing_input = ".".join(
            [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode())]
        ).encode()
        signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
        token = f"{signing_input.decode()}.{b64(signature)}"
        assert_refused(
            client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)), "algorithm"
        )


def test_rsa_key_presented_for_an_ec_issuer_is_refused(client, services):
    rsa = RSAKey.generate_key(2048, private=True)
    token = jwt.encode(
        {"alg": "RS256", "kid": services.issuer.kid}, claims_for(services.issuer), rsa
    )
    assert_refused(client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)))


@pytest.mark.parametrize("missing", ["exp", "sub", "aud", "iss", "role"])
def test_token_missing_a_required_claim_is_refused(client, services, missing):
    issuer = services.issuer
    key = ECKey.import_key(json.loads((issuer_key_path(services)).read_text()))
    token = sign_es256(key, claims_for(issuer, **{missing: None}), kid=issuer.kid)
    assert_refused(client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)))


def test_software_token_naming_nobody_it_acts_for_is_refused(client, services):
    token = services.issuer.mint("software", "lab-system")
    assert_refused(client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)))


def test_token_with_an_unknown_role_is_refused(client, services):
    token = services.issuer.mint("patient", PATIENT_INS, extra={"role": "superuser"})
    assert_refused(client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)))


def test_oversized_token_is_refused_before_any_parsing(client, services):
    padding = "x" * MAX_TOKEN_BYTES
    token = services.issuer.mint("patient", PATIENT_INS, extra={"padding": padding})
    assert len(token) > MAX_TOKEN_BYTES
    response = client.get("/fhir/DocumentReference?patient=x", headers=bearer(token))
    assert_refused(response)
    assert "too large" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c",
        "a.b.c.d.e",
        "...",
        "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln",  # payload is not JSON
        f"{b64(b'[1,2]')}.{b64(b'[1,2]')}.c2ln",  # JSON, but not objects
        f"{b64(b'{}')}.{b64(json.dumps({'iss': ['a', 'b']}).encode())}.c2ln",
        f"{b64(b'{}')}.{b64(json.dumps({'iss': {'x': 1}}).encode())}.c2ln",
        NOT_UTF8,
        "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwOi8vdGVzdHNlcnZlciJ9.%%%",
    ],
)
def test_malformed_token_is_refused(client, token):
    assert_refused(client.get("/fhir/DocumentReference?patient=x", headers=bearer(token)))


def test_valid_token_header_of_another_issuer_with_malformed_signature_is_refused(client, services):
    token = services.issuer.mint("patient", PATIENT_INS)
    head, body, _ = token.split(".")
    assert_refused(
        client.get("/fhir/DocumentReference?patient=x", headers=bearer(f"{head}.{body}.!!!!"))
    )


@examples(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token=st.text(max_size=300))
def test_any_string_is_either_a_principal_or_refused_never_a_crash(props, token):
    try:
        props[1].validate(token)
    except Unauthenticated:
        return
    pytest.fail("an arbitrary string validated")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@examples(max_examples=150, deadline=None)
@given(
    overrides=st.dictionaries(
        st.sampled_from(
            [
                "iss",
                "aud",
                "sub",
                "exp",
                "nbf",
                "iat",
                "role",
                "scope",
                "on_behalf_of",
                "profession",
                "jti",
                "client_id",
                "id_system",
            ]
        ),
        JSON_VALUES,
        max_size=4,
    )
)
def test_correctly_signed_tokens_with_any_claim_values_never_crash_validation(props, overrides):
    issuer, validator = props
    token = issuer.mint("patient", PATIENT_INS, extra=overrides)
    try:
        principal = validator.validate(token)
    except Unauthenticated:
        return
    assert isinstance(principal.subject, str)
    assert principal.subject


def issuer_key_path(services):
    return services.settings.data_dir / "issuer-key.json"
