"""Signing in to the patient's space: OpenID Connect (authorization code, PKCE S256,
``state`` and ``nonce``, authlib's Starlette client) against the configured provider, and,
with the embedded issuer on, the demonstration accounts.

Either way the result is the same: a Principal, checked as every token is, kept in a
session that gets a new id at that moment. The browser never holds a token.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from authlib.integrations.starlette_client import OAuth

from vault.errors import Unauthenticated
from vault.identity.principal import Principal, Role
from vault.identity.scopes import DEFAULT_SCOPES, parse_scopes, scopes_for_role
from vault.identity.tokens import EmbeddedIssuer, TokenValidator, principal_from_claims
from vault.settings import Settings

CLIENT = "vault"
# Who may use the space: a patient, or someone acting for one.
SPACE_ROLES = frozenset({Role.PATIENT, Role.CAREGIVER})
PRINCIPAL_KEY = "principal"


@dataclass(frozen=True)
class DemoAccount:
    key: str
    role: Role
    subject: str
    name: str


# The accounts `vault demo` seeds. The INS is a test INS (1.2.250.1.213.1.4.10 accepts it).
DEMO_PATIENT = DemoAccount("patient", Role.PATIENT, "279035121518989", "Camille Martin")
DEMO_CAREGIVER = DemoAccount("caregiver", Role.CAREGIVER, "demo-aidant-lucas", "Lucas Martin")
DEMO_ACCOUNTS = {account.key: account for account in (DEMO_PATIENT, DEMO_CAREGIVER)}


def build_oauth(settings: Settings) -> OAuth | None:
    """The provider patients sign in with, or None when none is configured."""
    if not (settings.web_oidc_issuer and settings.web_oidc_client_id):
        return None
    oauth = OAuth()
    secret = settings.web_oidc_client_secret
    oauth.register(
        CLIENT,
        client_id=settings.web_oidc_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        server_metadata_url=(
            settings.web_oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
        ),
        client_kwargs={"scope": settings.web_oidc_scope, "code_challenge_method": "S256"},
    )
    return oauth


def principal_from_id_token(
    validator: TokenValidator, issuer: str, claims: dict[str, Any]
) -> Principal:
    """The person an ID token (verified by authlib: signature, issuer, audience, nonce)
    names, mapped as the issuer's access tokens are (VAULT_OIDC_ISSUERS)."""
    trusted = validator.trusted(issuer)
    if trusted is None or claims.get("iss") != issuer:
        raise Unauthenticated("The identity provider is not among VAULT_OIDC_ISSUERS")
    return for_space(principal_from_claims(claims, trusted))


def for_space(principal: Principal) -> Principal:
    """The space acts for the person in the patient context, with a patient app's
    scopes; professionals have their own software."""
    if principal.role not in SPACE_ROLES:
        raise Unauthenticated("The patient's space is for patients and caregivers")
    scopes = scopes_for_role(principal.role, parse_scopes(DEFAULT_SCOPES[principal.role]))
    return dataclasses.replace(principal, scopes=scopes)


def demo_principal(issuer: EmbeddedIssuer, validator: TokenValidator, key: str) -> Principal:
    """A demonstration account signs in through a token the embedded issuer signs and the
    validator checks, as any token: without the embedded issuer there is none to sign."""
    account = DEMO_ACCOUNTS.get(key)
    if account is None:
        raise Unauthenticated("Unknown demonstration account")
    token = issuer.mint(account.role.value, account.subject, ttl=60, extra={"name": account.name})
    return for_space(validator.validate(token))


def session_principal(data: dict[str, Any]) -> Principal | None:
    stored = data.get(PRINCIPAL_KEY)
    if not isinstance(stored, dict):
        return None
    try:
        role = Role(stored["role"])
        principal = Principal(
            role=role,
            subject=str(stored["subject"]),
            issuer=stored.get("issuer"),
            profession=stored.get("profession"),
            name=stored.get("name"),
        )
    except (KeyError, ValueError):
        return None
    return for_space(principal)


def principal_record(principal: Principal) -> dict[str, Any]:
    return {
        "role": principal.role.value,
        "subject": principal.subject,
        "issuer": principal.issuer,
        "profession": principal.profession,
        "name": principal.name,
    }


def display_name(claims: dict[str, Any]) -> str | None:
    given, family = claims.get("given_name"), claims.get("family_name")
    parts = [part for part in (given, family) if isinstance(part, str) and part]
    if parts:
        return " ".join(parts)
    name = claims.get("name")
    return name if isinstance(name, str) and name else None
