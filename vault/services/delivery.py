"""Builds the worker that delivers the audit log's notifications (webhook, then e-mail)."""

from __future__ import annotations

from vault.audit.delivery import DeliveryWorker, sender_from_settings
from vault.db import SessionFactory
from vault.notifications.outbox import enqueue_notifications
from vault.settings import Settings


def delivery_worker(settings: Settings, factory: SessionFactory) -> DeliveryWorker:
    secret = settings.notify_webhook_secret
    return DeliveryWorker(
        factory,
        sender_from_settings(
            settings.notify_webhook_url, secret.get_secret_value() if secret else None
        ),
        max_attempts=settings.notify_max_attempts,
        backoff_seconds=settings.notify_backoff_seconds,
        # With e-mail on, each notification also queues its e-mail (if the patient wants it).
        fan_out=enqueue_notifications if settings.smtp_host else None,
    )
