"""Builds the audit log's services from the settings (no HTTP framework in here)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from vault.access.service import AccessService
from vault.audit.checkpoints import CheckpointService
from vault.audit.history import AuditHistory
from vault.audit.repository.tree import AuditTree
from vault.audit.signing import NoteVerifier, SigningKey
from vault.audit.verify import AuditVerifier
from vault.settings import Settings


@dataclass
class AuditLog:
    tree: AuditTree
    checkpoints: CheckpointService
    verifier: AuditVerifier
    history: AuditHistory


def log_origin(settings: Settings) -> str:
    """The checkpoints' origin line: ``VAULT_AUDIT_LOG_ORIGIN``, else the base URL without
    its scheme, plus ``/audit`` (C2SP origins are schemeless URLs)."""
    if settings.audit_log_origin:
        return settings.audit_log_origin
    parts = urlsplit(settings.base_url)
    return f"{parts.netloc}{parts.path.rstrip('/')}/audit"


def build_audit_log(settings: Settings, access: AccessService) -> AuditLog:
    key = SigningKey(
        log_origin(settings),
        settings.audit_signing_key.get_secret_value() if settings.audit_signing_key else None,
        settings.data_dir,
    )
    trusted = [
        NoteVerifier.parse(text) for text in settings.audit_trusted_keys.replace(",", " ").split()
    ]
    tree = AuditTree()
    checkpoints = CheckpointService(tree, key, trusted)
    return AuditLog(
        tree=tree,
        checkpoints=checkpoints,
        verifier=AuditVerifier(tree, checkpoints),
        history=AuditHistory(access),
    )
