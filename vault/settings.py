"""The vault's configuration: environment variables prefixed ``VAULT_``, read once."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VAULT_", extra="ignore")

    data_dir: Path = Path(".vault-data")
    # Empty means the embedded SQLite database under data_dir.
    database_url: str = ""
    # Off behind a pooler in transaction mode that does not track prepared statements
    # (PgBouncer before 1.21, docs/operations.md).
    database_prepared_statements: bool = True
    base_url: str = "http://127.0.0.1:8000"
    # Host names requests may name besides the base URL's and loopback (comma separated;
    # "*" for any): others get 400 (docs/operations.md).
    allowed_hosts: str = ""
    # The reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: addresses
    # or networks, comma separated. None by default: the peer's address is the client's.
    trusted_proxies: str = ""
    # "db:" keeps ciphertext in the database; "file:///path" or "s3://bucket" otherwise.
    blob_store: str = "db:"
    # Empty means "local:<data_dir>/keyring.json".
    key_provider: str = ""
    pkcs11_pin: SecretStr | None = None

    # Request bodies (docs/operations.md): FHIR routes up to max_body_bytes, every other
    # route (JSON APIs, /oauth/token, web forms) up to max_api_body_bytes.
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_api_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    check_ins_key: bool = False

    embedded_issuer: bool = True
    token_audience: str = "vault"  # noqa: S105 - an audience name, not a secret
    # Lifetime of the tokens `vault token` mints.
    token_ttl_seconds: int = Field(default=3600, ge=1)
    clock_skew_seconds: int = Field(default=30, ge=0, le=30)
    # JSON list of external OpenID Connect issuers, see docs/authentication.md.
    oidc_issuers: str = "[]"
    # Lifetime of the tokens /oauth/token issues to professional software.
    client_token_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    # Remote JWKS (external issuers, clients' jwks_url): kept this long, and refetched for
    # an unknown key id at most once per refresh interval.
    jwks_cache_seconds: int = Field(default=3600, ge=60)
    jwks_min_refresh_seconds: int = Field(default=60, ge=0)
    # Throttling, per process (docs/authentication.md): requests to /oauth/token per client
    # and per address, and failed authentications per address (and client), per window.
    token_rate_limit: int = Field(default=30, ge=1)
    auth_failure_limit: int = Field(default=20, ge=1)
    # Access refusals per actor (a 404 for what they may not see or what does not exist, a
    # refused search or change) before their requests are turned away with 429.
    refusal_limit: int = Field(default=30, ge=1)
    throttle_window_seconds: int = Field(default=60, ge=1)

    # Access policy (docs/access.md): the profession x document type matrix (empty means
    # the shipped vault/access/matrix.json), how long an emergency access lasts, and how long
    # a point-of-care consent does.
    access_matrix_file: Path | None = None
    emergency_access_minutes: int = Field(default=240, ge=5, le=24 * 60)
    point_of_care_days: int = Field(default=365, ge=1, le=3 * 365)

    # Audit log (docs/audit.md). The checkpoint signing key: PKCS#8 PEM or a base64 Ed25519
    # seed; empty means <data_dir>/audit-signing-key.pem, created on first use. Trusted keys
    # are C2SP verifier keys of earlier signing keys (space separated), for rotation.
    audit_signing_key: SecretStr | None = None
    audit_trusted_keys: str = ""
    # The checkpoints' origin line; empty means the base URL without scheme + "/audit".
    audit_log_origin: str = ""
    # How often each `vault serve` process signs a checkpoint (0: never, use the CLI).
    audit_checkpoint_seconds: float = Field(default=60.0, ge=0)
    # On PostgreSQL, reads' audit entries are committed together, each read's response
    # going out once its own entry is committed (docs/audit.md); off, each read commits
    # its entry in its own transaction. Either way no read goes out unrecorded.
    audit_group_commit: bool = True
    # Patient notifications: a webhook (empty: the development log sender), its HMAC
    # secret, how often each process looks for due ones (0: never, use the CLI), retries.
    notify_webhook_url: str = ""
    notify_webhook_secret: SecretStr | None = None
    notify_poll_seconds: float = Field(default=5.0, ge=0)
    notify_max_attempts: int = Field(default=10, ge=1)
    notify_backoff_seconds: float = Field(default=30.0, ge=0)

    # E-mail to patients (docs/operations.md), off while smtp_host is empty. Security is
    # "starttls" (submission, port 587), "tls" (implicit TLS, port 465) or "none" (a relay
    # on loopback only; never with credentials). smtp_ca_file adds CA certificates to trust.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    smtp_sender: str = ""
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    # The e-mail worker: how often it looks for due e-mails (0: never, use the CLI), how
    # long a claimed e-mail stays its own (a worker that dies frees it after this), retries.
    email_poll_seconds: float = Field(default=5.0, ge=0)
    email_lease_seconds: float = Field(default=300.0, ge=10)
    email_max_attempts: int = Field(default=8, ge=1)
    email_backoff_seconds: float = Field(default=60.0, ge=0)
    # How long the link that confirms a patient's address stays valid.
    email_confirmation_hours: int = Field(default=48, ge=1, le=24 * 14)

    # Exports of a whole record (docs/lifecycle.md): where archives wait, encrypted (empty:
    # <data_dir>/exports; shared storage when several hosts serve), how long one stays
    # downloadable, how many a record may ask for per day, the worker's poll interval (0:
    # never, use the CLI) and how long a build is its worker's before another may retake it.
    export_dir: Path | None = None
    export_ttl_hours: int = Field(default=72, ge=1, le=24 * 30)
    export_daily_limit: int = Field(default=3, ge=1)
    export_poll_seconds: float = Field(default=5.0, ge=0)
    export_lease_seconds: float = Field(default=3600.0, ge=60)

    # A record's lifetime (docs/lifecycle.md, docs/operations.md): a closed record is kept,
    # encrypted, this many days, then crypto-shredded by `vault records purge`; a patient who
    # asks for early deletion has it within early_deletion_days (the law's bound: three
    # months); the key that lets the purge tell them by e-mail that it is done is kept at
    # most deletion_notice_hours after the shredding.
    record_retention_days: int = Field(default=3650, ge=1)
    early_deletion_days: int = Field(default=30, ge=0, le=90)
    deletion_notice_hours: int = Field(default=72, ge=0, le=24 * 30)

    search_default_count: int = 20
    search_max_count: int = 200
    orphan_blob_grace_seconds: int = 3600
    # How long data backups are kept (docs/operations.md): an old master key is destroyed
    # by `vault keys retire` only this long after it stopped being current.
    backup_retention_days: int = Field(default=35, ge=0)
    key_cache_seconds: int = 300

    # The patient's space (docs/patients.md): the OpenID provider patients and caregivers
    # sign in with (it must be one of VAULT_OIDC_ISSUERS, whose claim mapping applies), the
    # vault's client there, and how long a browser session lasts when idle and at most.
    web_oidc_issuer: str = ""
    web_oidc_client_id: str = ""
    web_oidc_client_secret: SecretStr | None = None
    web_oidc_scope: str = "openid"
    web_session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    web_session_absolute_hours: int = Field(default=12, ge=1, le=7 * 24)

    log_json: bool = False
    log_level: str = "INFO"
    # When set, /metrics answers only to "Authorization: Bearer <this>" (docs/operations.md).
    metrics_token: SecretStr | None = None

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vault.sqlite3').resolve()}"

    @property
    def effective_export_dir(self) -> Path:
        return self.export_dir or self.data_dir / "exports"

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


# Addresses that listen on every interface: no one can open them, but this machine reaches
# the server on its loopback address.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104


def served_base_url(host: str, port: int) -> str:
    """The URL a server listening on ``host:port`` answers at, from this machine: the
    base URL when ``VAULT_BASE_URL`` does not say another (no proxy in front)."""
    name = _WILDCARDS.get(host, host)
    if ":" in name:
        name = f"[{name}]"
    return f"http://{name}:{port}"
