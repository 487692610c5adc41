"""``VAULT_OIDC_ISSUERS``: the external OpenID Connect providers whose tokens the vault
accepts (FranceConnect, Pro Santé Connect, an organisation's own identity broker ...).

A JSON list; each entry names the issuer, where its keys are, the audience its tokens carry
for the vault, and how its claims map to a role and an identifier. Unknown fields are an
error, so that a misspelt mapping cannot silently fall back to a default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from vault.errors import VaultError
from vault.identity.jwks import KeySource, RemoteJwks, StaticKeys, import_jwks
from vault.identity.principal import Role
from vault.identity.tokens import EXTERNAL_ROLES, ClaimMapping, TrustedIssuer


class IssuerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(min_length=1)
    audience: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_file: Path | None = None
    jwks_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("jwks_uri", "jwks_url")
    )
    role: Role | None = Field(default=None, validation_alias=AliasChoices("role", "fixed_role"))
    role_claim: str = "role"
    role_values: dict[str, Role] = Field(default_factory=dict)
    roles: frozenset[Role] = EXTERNAL_ROLES
    subject_claim: str = "sub"
    subject_system: str | None = None
    profession_claim: str = "profession"
    specialty_claim: str = "specialty"
    on_behalf_of_claim: str = "on_behalf_of"
    scope_claim: str = "scope"
    default_scope: str | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerConfig:
        sources = [self.jwks, self.jwks_file, self.jwks_uri]
        if sum(source is not None for source in sources) != 1:
            raise ValueError("give exactly one of jwks, jwks_file, jwks_uri")
        if self.role is not None and self.role not in self.roles:
            raise ValueError(f"role {self.role.value} is not among the allowed roles")
        return self

    def key_source(self, cache_seconds: float, min_refresh_seconds: float) -> KeySource:
        if self.jwks_uri is not None:
            return RemoteJwks(
                self.jwks_uri, max_age=cache_seconds, min_refresh_interval=min_refresh_seconds
            )
        if self.jwks_file is not None:
            try:
                document = json.loads(self.jwks_file.read_text())
            except (OSError, ValueError) as error:
                raise VaultError(f"cannot read JWKS file {self.jwks_file}: {error}") from None
            return StaticKeys(import_jwks(document))
        return StaticKeys(import_jwks(self.jwks))

    def mapping(self) -> ClaimMapping:
        return ClaimMapping(
            role=self.role,
            role_claim=self.role_claim,
            role_values={key: value.value for key, value in self.role_values.items()},
            roles=self.roles,
            subject_claim=self.subject_claim,
            subject_system=self.subject_system,
            profession_claim=self.profession_claim,
            specialty_claim=self.specialty_claim,
            on_behalf_of_claim=self.on_behalf_of_claim,
            scope_claim=self.scope_claim,
            default_scope=self.default_scope,
        )


def load_issuers(
    text: str,
    *,
    default_audience: str,
    cache_seconds: float = 3600,
    min_refresh_seconds: float = 60,
) -> list[TrustedIssuer]:
    try:
        raw = json.loads(text or "[]")
    except json.JSONDecodeError:
        raise VaultError("VAULT_OIDC_ISSUERS is not valid JSON") from None
    if not isinstance(raw, list):
        raise VaultError("VAULT_OIDC_ISSUERS must be a JSON list")
    issuers: list[TrustedIssuer] = []
    for position, item in enumerate(raw):
        try:
            config = IssuerConfig.model_validate(item)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise VaultError(
                f"VAULT_OIDC_ISSUERS[{position}] {where}: {first['msg']}".rstrip(": ")
            ) from None
        if any(existing.issuer == config.issuer for existing in issuers):
            raise VaultError(f"VAULT_OIDC_ISSUERS names {config.issuer} twice")
        issuers.append(
            TrustedIssuer(
                issuer=config.issuer,
                keys=config.key_source(cache_seconds, min_refresh_seconds),
                audience=config.audience or default_audience,
                mapping=config.mapping(),
            )
        )
    return issuers
