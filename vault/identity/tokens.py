"""Access tokens: the embedded issuer (development, demos, tests, and the tokens
``/oauth/token`` grants to professional software) and validation of every token the vault
receives, whoever issued it.

Only asymmetric algorithms are accepted, and each trusted issuer is pinned to its own keys,
so ``alg: none`` and the HS256-with-a-public-key confusion cannot succeed.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import ClaimError, JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jwt import JWTClaimsRegistry

from vault.errors import Unauthenticated, VaultError
from vault.identity.jwks import KeySource, StaticKeys
from vault.identity.principal import Principal, Role, normalise_professional_id
from vault.identity.scopes import DEFAULT_SCOPES, parse_scopes, scopes_for_role
from vault.keyfiles import create_private_file

ALGORITHMS = ["RS256", "ES256"]
MAX_TOKEN_BYTES = 16 * 1024
# What an external provider may assert unless its configuration says otherwise: operators
# are the vault's own staff and come from the embedded issuer or an explicitly allowed one.
EXTERNAL_ROLES = frozenset({Role.PATIENT, Role.PROFESSIONAL, Role.CAREGIVER, Role.SOFTWARE})


@dataclass(frozen=True)
class ClaimMapping:
    """How an issuer's claims become a Principal (docs/authentication.md)."""

    # A fixed role for issuers that serve one kind of user (FranceConnect: patients; Pro
    # Santé Connect: professionals); otherwise the role is read from ``role_claim``, its
    # value translated through ``role_values`` when the provider has its own vocabulary.
    role: Role | None = None
    role_claim: str = "role"
    role_values: Mapping[str, str] = field(default_factory=dict)
    roles: frozenset[Role] = frozenset(Role)
    subject_claim: str = "sub"
    # The identifier system of the subject claim; an RPPS number becomes its IDNPS.
    subject_system: str | None = None
    profession_claim: str = "profession"
    specialty_claim: str = "specialty"
    on_behalf_of_claim: str = "on_behalf_of"
    scope_claim: str = "scope"
    # SMART scopes for tokens that carry none (OpenID providers issue ``openid profile``).
    default_scope: str | None = None


class IssuerKeyError(VaultError):
    """The embedded issuer's key file cannot be used."""


@dataclass(frozen=True)
class TrustedIssuer:
    issuer: str
    keys: KeySource
    audience: str
    mapping: ClaimMapping = field(default_factory=ClaimMapping)


class EmbeddedIssuer:
    """Signs tokens with an ES256 key kept in the data directory (created 0600)."""

    def __init__(self, data_dir: Path, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        path = data_dir / "issuer-key.json"
        if not path.exists():
            generated = ECKey.generate_key("P-256", private=True, auto_kid=True)
            # Of several workers starting at once, one key wins and all read it.
            create_private_file(path, json.dumps(generated.as_dict(private=True)).encode())
        try:
            self._key = ECKey.import_key(json.loads(path.read_text()))
        except ValueError:
            raise IssuerKeyError(
                f"{path} is not a usable key (cut short by a crash in an older version?); "
                "no token can have been signed with it: delete it and start again"
            ) from None
        self.kid = str(self._key.kid)

    def jwks(self) -> dict[str, Any]:
        public = dict(self._key.as_dict(private=False))
        public.update({"use": "sig", "alg": "ES256", "kid": self.kid})
        return {"keys": [public]}

    def trusted(self) -> TrustedIssuer:
        return TrustedIssuer(
            issuer=self.issuer,
            keys=StaticKeys(KeySet.import_key_set(self.jwks())),  # type: ignore[arg-type]
            audience=self.audience,
        )

    def mint(
        self,
        role: str,
        subject: str,
        *,
        scope: str | None = None,
        ttl: int = 3600,
        profession: str | None = None,
        specialty: str | None = None,
        on_behalf_of: str | None = None,
        client_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        try:
            Role(role)
        except ValueError:
            raise VaultError(f"Unknown role {role!r}") from None
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "role": role,
            "scope": scope or DEFAULT_SCOPES[role],
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": secrets.token_urlsafe(16),
        }
        if role == Role.PROFESSIONAL:
            claims["profession"] = profession or "10"
            if specialty:
                claims["specialty"] = specialty
        if on_behalf_of:
            claims["on_behalf_of"] = on_behalf_of
        if client_id or role == Role.SOFTWARE:
            claims["client_id"] = client_id or subject
        claims.update(extra or {})
        header = {"alg": "ES256", "kid": self.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self._key, algorithms=["ES256"])


class TokenValidator:
    def __init__(
        self,
        issuers: list[TrustedIssuer],
        clock_skew: int = 30,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuers = {issuer.issuer: issuer for issuer in issuers}
        self._skew = clock_skew
        self._clock = clock
        self._verified = _VerifiedTokens()

    def trusted(self, issuer: str) -> TrustedIssuer | None:
        return self._issuers.get(issuer)

    def validate(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("Access token is too large")
        now = self._clock()
        known = self._verified.recall(token, now)
        if known is not None:
            return known
        principal, expires = self._verify(token, now)
        self._verified.remember(token, principal, now, expires + self._skew)
        return principal

    def _verify(self, token: str, now: float) -> tuple[Principal, float]:
        header, unverified = _unverified(token)
        issuer = self._issuers.get(unverified.get("iss"))  # type: ignore[arg-type]
        if issuer is None:
            raise Unauthenticated("Access token from an untrusted issuer")
        if header.get("alg") not in ALGORITHMS:
            raise Unauthenticated("Access token signed with an algorithm the vault refuses")
        kid = header.get("kid")
        keys = issuer.keys.key_set(kid if isinstance(kid, str) else None)
        registry = JWTClaimsRegistry(
            now=int(now),
            leeway=self._skew,
            iss={"essential": True, "value": issuer.issuer},
            aud={"essential": True, "value": issuer.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            claims = jwt.decode(token, keys, algorithms=ALGORITHMS).claims
            registry.validate(claims)
        except ClaimError as error:
            # The claim's name is the vault's own, never text from the token.
            raise Unauthenticated(f"Invalid access token: {error.error} ({error.claim})") from None
        except JoseError as error:
            raise Unauthenticated(f"Invalid access token: {error.error}") from None
        except (ValueError, TypeError, KeyError):
            raise Unauthenticated("Malformed access token") from None
        return _principal(claims, issuer), float(claims["exp"])


# A client sends the same token with every request until it expires; checking its
# signature and claims again each time was 5% of an ingest's CPU (docs/performance.md).
# A token verified once is honoured until it expires, but for at most this long, so that
# an issuer's withdrawn key stops being honoured as soon as the vault's keys are refreshed.
VERIFIED_TOKEN_SECONDS = 60
VERIFIED_TOKENS = 10_000


class _VerifiedTokens:
    """Tokens already verified, by their exact text: a token differing by one character,
    a forged signature included, is a different entry and is verified in full."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def recall(self, token: str, now: float) -> Principal | None:
        with self._lock:
            hit = self._entries.get(token)
            if hit is None:
                return None
            until, principal = hit
            if now >= until:
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return principal

    def remember(self, token: str, principal: Principal, now: float, expires: float) -> None:
        with self._lock:
            self._entries[token] = (min(expires, now + VERIFIED_TOKEN_SECONDS), principal)
            self._entries.move_to_end(token)
            while len(self._entries) > VERIFIED_TOKENS:
                self._entries.popitem(last=False)


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims, unverified: only to choose which issuer's keys to verify with."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthenticated("Malformed access token")
    try:
        header, claims = (
            json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            for part in parts[:2]
        )
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Unauthenticated("Malformed access token") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Unauthenticated("Malformed access token")
    if not isinstance(claims.get("iss"), str):
        raise Unauthenticated("Access token names no issuer")
    return header, claims


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by a dotted path into nested objects and lists
    (``ext.ins``, ``SubjectRefPro.exercices.0.codeProfession``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    return None


def _role(claims: Mapping[str, Any], mapping: ClaimMapping) -> Role:
    if mapping.role is not None:
        return mapping.role
    value = _claim(claims, mapping.role_claim)
    candidates = value if isinstance(value, list) else [value]
    for candidate in candidates:
        if not isinstance(candidate, str):
            continue
        name = mapping.role_values.get(candidate, candidate if not mapping.role_values else None)
        if name is None:
            continue
        try:
            role = Role(name)
        except ValueError:
            continue
        if role in mapping.roles:
            return role
    raise Unauthenticated("Access token names no role this issuer may grant")


def _scopes(claims: Mapping[str, Any], mapping: ClaimMapping) -> str:
    value = _claim(claims, mapping.scope_claim)
    if isinstance(value, list):
        value = " ".join(item for item in value if isinstance(item, str))
    text = value if isinstance(value, str) else ""
    if not parse_scopes(text) and mapping.default_scope:
        return mapping.default_scope
    return text


def principal_from_claims(claims: dict[str, Any], issuer: TrustedIssuer) -> Principal:
    """The principal an issuer's verified claims describe (an access token's, or the ID
    token of a sign-in to the patient's space), by the issuer's claim mapping."""
    return _principal(claims, issuer)


def _principal(claims: dict[str, Any], issuer: TrustedIssuer) -> Principal:
    mapping = issuer.mapping
    role = _role(claims, mapping)
    subject = _text(_claim(claims, mapping.subject_claim))
    if subject is None:
        raise Unauthenticated("Access token names no subject")
    if role is Role.PROFESSIONAL:
        system = _text(claims.get("id_system")) or mapping.subject_system
        subject = normalise_professional_id(system, subject)
    on_behalf_of = _text(_claim(claims, mapping.on_behalf_of_claim))
    if role is Role.SOFTWARE and not on_behalf_of:
        raise Unauthenticated("Software tokens must name the professional they act for")
    scopes = scopes_for_role(role, parse_scopes(_scopes(claims, mapping)))
    return Principal(
        role=role,
        subject=subject,
        scopes=scopes,
        on_behalf_of=on_behalf_of,
        client_id=_text(claims.get("client_id")),
        token_id=_text(claims.get("jti")),
        profession=_text(_claim(claims, mapping.profession_claim)),
        specialty=_text(_claim(claims, mapping.specialty_claim)),
        issuer=issuer.issuer,
        name=_display_name(claims),
    )


def _display_name(claims: Mapping[str, Any]) -> str | None:
    name = _text(claims.get("name"))
    if name is None:
        parts = [_text(claims.get(key)) for key in ("given_name", "family_name")]
        name = " ".join(part for part in parts if part) or None
    # A name, not a document: bounded, on one line.
    return " ".join(name.split())[:128] if name else None
