"""Wiring: builds every service once from the settings. No HTTP framework in here."""

from __future__ import annotations

from dataclasses import dataclass

from vault.access.group import GroupCommit
from vault.access.journal import AuditService
from vault.access.matrix import load_matrix
from vault.access.service import AccessService
from vault.audit.wiring import AuditLog, build_audit_log
from vault.db import Engine, SessionFactory, make_engine, make_session_factory
from vault.documents.search import DocumentSearch
from vault.documents.service import DocumentService
from vault.errors import VaultError
from vault.exports.service import ExportService
from vault.identity.clients import ClientRegistry
from vault.identity.issuers import load_issuers
from vault.identity.oauth import TokenEndpoint
from vault.identity.tokens import EmbeddedIssuer, TokenValidator, TrustedIssuer
from vault.notifications.contacts import ContactKeys
from vault.notifications.service import NotificationPreferences
from vault.patients.service import PatientService
from vault.policies.management import PolicyService
from vault.records.oppositions import OppositionService
from vault.records.service import RecordService
from vault.settings import Settings
from vault.storage.blobs.base import BlobStore
from vault.storage.blobs.factory import blob_store_from_url
from vault.storage.envelope import Envelope
from vault.storage.keys.factory import key_provider_from_url
from vault.storage.keys.instrumented import instrument_key_provider
from vault.storage.keys.provider import KeyProvider
from vault.storage.keys.service import KeyService
from vault.submissions.ingest import Ingestion
from vault.submissions.service import SubmissionSetService
from vault.submissions.subject import SubjectResolver


@dataclass
class Services:
    settings: Settings
    engine: Engine
    session_factory: SessionFactory
    key_provider: KeyProvider
    keys: KeyService
    blobs: BlobStore
    audit: AuditService
    # Merkle tree, checkpoints, verification and patients' history (docs/audit.md).
    audit_log: AuditLog
    access: AccessService
    # Patients' access policies: who may see what (docs/access.md).
    policies: PolicyService
    patients: PatientService
    documents: DocumentService
    search: DocumentSearch
    ingestion: Ingestion
    submission_sets: SubmissionSetService
    issuer: EmbeddedIssuer | None
    tokens: TokenValidator
    clients: ClientRegistry
    # /oauth/token; None when the embedded issuer, which signs its tokens, is off.
    oauth: TokenEndpoint | None
    # Patients' e-mail preferences (docs/operations.md, vault/notifications/).
    notifications: NotificationPreferences
    # Exports of whole records (docs/lifecycle.md, vault/exports/).
    exports: ExportService
    # Closing, deleting, reopening records; oppositions (docs/lifecycle.md, vault/records/).
    records: RecordService
    oppositions: OppositionService

    def close(self) -> None:
        if self.access.group is not None:
            self.access.group.close()
        self.engine.dispose()


def external_issuers(settings: Settings) -> list[TrustedIssuer]:
    """``VAULT_OIDC_ISSUERS``, see vault/identity/issuers.py and docs/authentication.md."""
    return load_issuers(
        settings.oidc_issuers,
        default_audience=settings.token_audience,
        cache_seconds=settings.jwks_cache_seconds,
        min_refresh_seconds=settings.jwks_min_refresh_seconds,
    )


def _group_commit(settings: Settings, audit: AuditService) -> GroupCommit | None:
    """Reads' entries committed together, on a connection of their own (one transaction at
    a time needs one; the second stands by while the first is re-established). SQLite,
    one writer at a time, commits each read's entry in its request's transaction."""
    url = settings.effective_database_url
    if not settings.audit_group_commit or not url.startswith("postgresql"):
        return None
    # Behind a transaction pooler it must not prepare statements either (docs/operations.md).
    engine = make_engine(
        url,
        prepared_statements=settings.database_prepared_statements,
        pool_size=2,
        max_overflow=0,
    )
    return GroupCommit(audit, make_session_factory(engine), engine)


def build_services(settings: Settings) -> Services:
    engine = make_engine(
        settings.effective_database_url,
        prepared_statements=settings.database_prepared_statements,
    )
    session_factory = make_session_factory(engine)
    pin = settings.pkcs11_pin.get_secret_value() if settings.pkcs11_pin else None
    key_provider = instrument_key_provider(
        key_provider_from_url(settings.effective_key_provider, pin)
    )
    keys = KeyService(key_provider, cache_seconds=settings.key_cache_seconds)
    blobs = blob_store_from_url(settings.blob_store, session_factory)
    audit = AuditService()
    access = AccessService(
        audit,
        key_provider,
        load_matrix(settings.access_matrix_file),
        group=_group_commit(settings, audit),
    )
    envelope = Envelope(keys)
    patients = PatientService(access, envelope, key_provider, check_ins_key=settings.check_ins_key)
    documents = DocumentService(access, envelope, blobs, key_provider)
    search = DocumentSearch(access, documents)
    submission_sets = SubmissionSetService(access, envelope)
    subjects = SubjectResolver(patients, settings.base_url, check_ins_key=settings.check_ins_key)
    ingestion = Ingestion(documents, patients, subjects, submission_sets)
    issuer = (
        EmbeddedIssuer(settings.data_dir, settings.issuer, settings.token_audience)
        if settings.embedded_issuer
        else None
    )
    trusted = external_issuers(settings)
    if issuer is not None:
        if any(item.issuer == issuer.issuer for item in trusted):
            raise VaultError("VAULT_OIDC_ISSUERS names the embedded issuer (VAULT_BASE_URL)")
        trusted.append(issuer.trusted())
    policies = PolicyService(
        access,
        documents,
        envelope,
        emergency_minutes=settings.emergency_access_minutes,
        point_of_care_days=settings.point_of_care_days,
        trusted_issuers=frozenset(item.issuer for item in trusted),
        default_caregiver_issuer=issuer.issuer if issuer is not None else None,
    )
    clients = ClientRegistry(settings.jwks_cache_seconds, settings.jwks_min_refresh_seconds)
    oauth = (
        TokenEndpoint(
            issuer,
            clients,
            session_factory,
            token_url=f"{settings.issuer}/oauth/token",
            token_ttl=settings.client_token_ttl_seconds,
            clock_skew=settings.clock_skew_seconds,
        )
        if issuer is not None
        else None
    )
    return Services(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        key_provider=key_provider,
        keys=keys,
        blobs=blobs,
        audit=audit,
        audit_log=build_audit_log(settings, access),
        access=access,
        policies=policies,
        patients=patients,
        documents=documents,
        search=search,
        ingestion=ingestion,
        submission_sets=submission_sets,
        issuer=issuer,
        tokens=TokenValidator(trusted, clock_skew=settings.clock_skew_seconds),
        clients=clients,
        oauth=oauth,
        notifications=NotificationPreferences(
            access,
            ContactKeys(envelope, key_provider),
            confirmation_hours=settings.email_confirmation_hours,
        ),
        exports=ExportService(
            access,
            keys,
            settings.effective_export_dir,
            ttl_hours=settings.export_ttl_hours,
            daily_limit=settings.export_daily_limit,
        ),
        records=RecordService(
            access,
            retention_days=settings.record_retention_days,
            early_deletion_days=settings.early_deletion_days,
            export_dir=settings.effective_export_dir,
        ),
        oppositions=OppositionService(access, key_provider),
    )
