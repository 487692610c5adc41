"""Wiring: builds every service once from the settings. No HTTP framework in here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import KeySet
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vault.access.service import AccessService
from vault.access.tokens import EmbeddedIssuer, TokenValidator, TrustedIssuer
from vault.audit.service import AuditService
from vault.db import make_engine, make_session_factory
from vault.documents.ingest import Ingestion
from vault.documents.search import DocumentSearch
from vault.documents.service import DocumentService
from vault.documents.subject import SubjectResolver
from vault.errors import VaultError
from vault.patients.service import PatientService
from vault.settings import Settings
from vault.storage.blobs.base import BlobStore
from vault.storage.blobs.factory import blob_store_from_url
from vault.storage.envelope import Envelope
from vault.storage.keys.factory import key_provider_from_url
from vault.storage.keys.provider import KeyProvider
from vault.storage.keys.service import KeyService


@dataclass
class Services:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    key_provider: KeyProvider
    keys: KeyService
    blobs: BlobStore
    audit: AuditService
    access: AccessService
    patients: PatientService
    documents: DocumentService
    search: DocumentSearch
    ingestion: Ingestion
    issuer: EmbeddedIssuer | None
    tokens: TokenValidator

    def close(self) -> None:
        self.engine.dispose()


def external_issuers(settings: Settings) -> list[TrustedIssuer]:
    """``VAULT_OIDC_ISSUERS``: a JSON list of {issuer, audience, jwks | jwks_file, role_claim,
    subject_claim, fixed_role}; see docs/authentication.md."""
    try:
        configured: list[dict[str, Any]] = json.loads(settings.oidc_issuers)
    except json.JSONDecodeError:
        raise VaultError("VAULT_OIDC_ISSUERS is not valid JSON") from None
    issuers = []
    for item in configured:
        if "jwks_file" in item:
            with open(item["jwks_file"]) as handle:  # noqa: PTH123 - path from operator config
                jwks = json.load(handle)
        else:
            jwks = item["jwks"]
        issuers.append(
            TrustedIssuer(
                issuer=item["issuer"],
                keys=KeySet.import_key_set(jwks),
                audience=item.get("audience", settings.token_audience),
                role_claim=item.get("role_claim", "role"),
                subject_claim=item.get("subject_claim", "sub"),
                fixed_role=item.get("fixed_role"),
            )
        )
    return issuers


def build_services(settings: Settings) -> Services:
    engine = make_engine(settings.effective_database_url)
    session_factory = make_session_factory(engine)
    pin = settings.pkcs11_pin.get_secret_value() if settings.pkcs11_pin else None
    key_provider = key_provider_from_url(settings.effective_key_provider, pin)
    keys = KeyService(key_provider, cache_seconds=settings.key_cache_seconds)
    blobs = blob_store_from_url(settings.blob_store, session_factory)
    audit = AuditService()
    access = AccessService(audit, key_provider)
    envelope = Envelope(keys)
    patients = PatientService(access, envelope, key_provider, check_ins_key=settings.check_ins_key)
    documents = DocumentService(access, envelope, blobs, key_provider)
    search = DocumentSearch(access, documents)
    ingestion = Ingestion(documents, patients, SubjectResolver(patients, settings.base_url))
    issuer = (
        EmbeddedIssuer(settings.data_dir, settings.issuer, settings.token_audience)
        if settings.embedded_issuer
        else None
    )
    trusted = external_issuers(settings)
    if issuer is not None:
        trusted.append(issuer.trusted())
    return Services(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        key_provider=key_provider,
        keys=keys,
        blobs=blobs,
        audit=audit,
        access=access,
        patients=patients,
        documents=documents,
        search=search,
        ingestion=ingestion,
        issuer=issuer,
        tokens=TokenValidator(trusted, clock_skew=settings.clock_skew_seconds),
    )
