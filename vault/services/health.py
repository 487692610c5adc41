"""Readiness: can this process serve requests right now?

The answer names no component to the caller (an unauthenticated probe learns "ready" or
"not ready", nothing about the infrastructure); which one failed goes to the log and to
the ``vault_readiness_failures`` metric.
"""

from __future__ import annotations

from collections.abc import Callable

from vault.db import Engine, ping
from vault.observability import metrics
from vault.observability.logs import get_logger
from vault.services import Services

log = get_logger("vault.health")


def _database(engine: Engine) -> Callable[[], None]:
    def check() -> None:
        ping(engine)

    return check


def failing_components(services: Services) -> list[str]:
    checks: dict[str, Callable[[], None]] = {
        "database": _database(services.engine),
        "blob_store": services.blobs.check,
        "key_provider": services.key_provider.check,
    }
    failing = []
    for component, check in checks.items():
        try:
            check()
        except Exception as error:  # noqa: BLE001 - any failure means "not ready"
            log.warning("readiness check failed", component=component, error=type(error).__name__)
            metrics.READINESS_FAILURES.labels(component).inc()
            failing.append(component)
    return failing
