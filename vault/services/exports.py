"""Builds the export worker from the services (no HTTP framework in here)."""

from __future__ import annotations

from vault.exports.archive import ArchiveBuilder, Readers
from vault.exports.everything import Everything
from vault.exports.service import ExportWorker
from vault.services import Services


def readers(services: Services) -> Readers:
    return Readers(
        access=services.access,
        documents=services.documents,
        patients=services.patients,
        policies=services.policies,
        history=services.audit_log.history,
        audit_log=services.audit_log,
    )


def everything(services: Services) -> Everything:
    return Everything(readers(services), services.settings.base_url)


def export_worker(services: Services) -> ExportWorker:
    return ExportWorker(
        services.session_factory,
        services.exports,
        ArchiveBuilder(services.session_factory, readers(services), services.settings.base_url),
        services.keys,
        lease_seconds=services.settings.export_lease_seconds,
    )
