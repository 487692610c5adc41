"""The purge job (vault/records/purge.py), built from the services."""

from __future__ import annotations

from vault.records.purge import Purger
from vault.services import Services


def purger(services: Services) -> Purger:
    return Purger(
        services.session_factory,
        services.keys,
        services.notifications.contacts,
        services.audit,
        notice_hours=services.settings.deletion_notice_hours,
    )
