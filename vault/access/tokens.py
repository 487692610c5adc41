"""Access tokens: the embedded issuer (development, demos, tests) and validation of every
token the vault receives, whoever issued it.

Only asymmetric algorithms are accepted, and each trusted issuer is pinned to its own keys,
so ``alg: none`` and the HS256-with-a-public-key confusion cannot succeed.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jwt import JWTClaimsRegistry

from vault.access.principal import Principal, Role, normalise_professional_id
from vault.access.scopes import DEFAULT_SCOPES, parse_scopes
from vault.errors import Unauthenticated, VaultError

ALGORITHMS = ["RS256", "ES256"]
MAX_TOKEN_BYTES = 16 * 1024


@dataclass(frozen=True)
class TrustedIssuer:
    issuer: str
    keys: KeySet
    audience: str
    # Claim names for role and identifier; a fixed role for issuers that serve one kind of
    # user (FranceConnect: patients; Pro Santé Connect: professionals).
    role_claim: str = "role"
    subject_claim: str = "sub"
    fixed_role: str | None = None


class EmbeddedIssuer:
    """Signs tokens with an ES256 key kept in the data directory (created 0600)."""

    def __init__(self, data_dir: Path, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        path = data_dir / "issuer-key.json"
        if path.exists():
            self._key = ECKey.import_key(json.loads(path.read_text()))
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._key = ECKey.generate_key("P-256", private=True, auto_kid=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(self._key.as_dict(private=True), handle)
        self.kid = str(self._key.kid)

    def jwks(self) -> dict[str, Any]:
        public = dict(self._key.as_dict(private=False))
        public.update({"use": "sig", "alg": "ES256", "kid": self.kid})
        return {"keys": [public]}

    def trusted(self) -> TrustedIssuer:
        return TrustedIssuer(
            issuer=self.issuer,
            keys=KeySet.import_key_set(self.jwks()),  # type: ignore[arg-type]
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
    def __init__(self, issuers: list[TrustedIssuer], clock_skew: int = 30) -> None:
        self._issuers = {issuer.issuer: issuer for issuer in issuers}
        self._skew = clock_skew

    def validate(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("Access token is too large")
        issuer = self._issuer_of(token)
        registry = JWTClaimsRegistry(
            leeway=self._skew,
            iss={"essential": True, "value": issuer.issuer},
            aud={"essential": True, "value": issuer.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            claims = jwt.decode(token, issuer.keys, algorithms=ALGORITHMS).claims
            registry.validate(claims)
        except JoseError as error:
            raise Unauthenticated(f"Invalid access token: {error.error}") from None
        except (ValueError, TypeError, KeyError):
            raise Unauthenticated("Malformed access token") from None
        return _principal(claims, issuer)

    def _issuer_of(self, token: str) -> TrustedIssuer:
        """Read the unverified ``iss`` only to choose which keys to verify with."""
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            issuer = self._issuers.get(claims.get("iss"))
        except (IndexError, ValueError, AttributeError, UnicodeDecodeError):
            raise Unauthenticated("Malformed access token") from None
        if issuer is None:
            raise Unauthenticated("Access token from an untrusted issuer")
        return issuer


def _principal(claims: dict[str, Any], issuer: TrustedIssuer) -> Principal:
    role_text = issuer.fixed_role or claims.get(issuer.role_claim)
    try:
        role = Role(str(role_text))
    except ValueError:
        raise Unauthenticated("Access token names no known role") from None
    subject = claims.get(issuer.subject_claim)
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("Access token names no subject")
    on_behalf_of = claims.get("on_behalf_of")
    if role is Role.PROFESSIONAL:
        subject = normalise_professional_id(claims.get("id_system"), subject)
    if role is Role.SOFTWARE and not on_behalf_of:
        raise Unauthenticated("Software tokens must name the professional they act for")
    return Principal(
        role=role,
        subject=subject,
        scopes=parse_scopes(str(claims.get("scope", ""))),
        on_behalf_of=str(on_behalf_of) if on_behalf_of else None,
        client_id=str(claims["client_id"]) if claims.get("client_id") else None,
        token_id=str(claims["jti"]) if claims.get("jti") else None,
        profession=str(claims["profession"]) if claims.get("profession") else None,
        specialty=str(claims["specialty"]) if claims.get("specialty") else None,
        issuer=issuer.issuer,
    )
