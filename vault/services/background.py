"""The audit log's periodic work inside ``vault serve``: signing checkpoints and delivering
notifications. Every server process runs both loops; the tree head lock and
``SKIP LOCKED`` make that safe, and any one process keeps the log moving alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from vault.services import Services
from vault.services.delivery import delivery_worker
from vault.services.email import email_worker
from vault.services.exports import export_worker

log = logging.getLogger("vault.audit")


class AuditWorkers:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        settings = self._services.settings
        if settings.audit_checkpoint_seconds > 0:
            self._spawn("audit-checkpoints", settings.audit_checkpoint_seconds, self._checkpoint)
        if settings.notify_poll_seconds > 0:
            worker = delivery_worker(settings, self._services.session_factory)
            self._spawn("audit-notifications", settings.notify_poll_seconds, worker.run_once)
        emails = email_worker(self._services)
        if emails is not None and settings.email_poll_seconds > 0:
            self._spawn("notification-emails", settings.email_poll_seconds, emails.run_once)
        if settings.export_poll_seconds > 0:
            exports = export_worker(self._services)
            self._spawn("record-exports", settings.export_poll_seconds, exports.run_once)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _checkpoint(self) -> None:
        self._services.audit_log.checkpoints.make(self._services.session_factory)

    def _spawn(self, name: str, interval: float, work: Callable[[], object]) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    work()
                except Exception as error:  # noqa: BLE001 - a loop must outlive one bad round
                    # The class only: a message could carry data from the database.
                    log.warning("%s failed: %s", name, type(error).__name__)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
