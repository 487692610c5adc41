"""The vault's configuration: environment variables prefixed ``VAULT_``, read once."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VAULT_", extra="ignore")

    data_dir: Path = Path(".vault-data")
    # Empty means the embedded SQLite database under data_dir.
    database_url: str = ""
    base_url: str = "http://127.0.0.1:8000"
    # "db:" keeps ciphertext in the database; "file:///path" or "s3://bucket" otherwise.
    blob_store: str = "db:"
    # Empty means "local:<data_dir>/keyring.json".
    key_provider: str = ""
    pkcs11_pin: SecretStr | None = None

    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    check_ins_key: bool = False

    embedded_issuer: bool = True
    token_audience: str = "vault"  # noqa: S105 - an audience name, not a secret
    token_ttl_seconds: int = 3600
    clock_skew_seconds: int = Field(default=30, ge=0, le=30)
    # JSON list of external OpenID Connect issuers, see docs/authentication.md.
    oidc_issuers: str = "[]"

    search_default_count: int = 20
    search_max_count: int = 200
    orphan_blob_grace_seconds: int = 3600
    key_cache_seconds: int = 300

    log_json: bool = False
    log_level: str = "INFO"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vault.sqlite3').resolve()}"

    @property
    def effective_key_provider(self) -> str:
        if self.key_provider:
            return self.key_provider
        return f"local:{(self.data_dir / 'keyring.json').resolve()}"

    @property
    def issuer(self) -> str:
        return self.base_url.rstrip("/")


@lru_cache
def get_settings() -> Settings:
    return Settings()
