"""Builds the e-mail worker from the settings (no HTTP framework in here)."""

from __future__ import annotations

from vault.notifications.mail import SmtpMailer, SmtpSettings
from vault.notifications.outbox import EmailWorker, Links
from vault.services import Services
from vault.settings import Settings


def smtp_settings(settings: Settings) -> SmtpSettings:
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        sender=settings.smtp_sender,
        ca_file=settings.smtp_ca_file,
        timeout=settings.smtp_timeout_seconds,
    )


def email_worker(services: Services) -> EmailWorker | None:
    """None while e-mail is off (``VAULT_SMTP_HOST`` empty)."""
    settings = services.settings
    if not settings.smtp_host:
        return None
    mailer = SmtpMailer(smtp_settings(settings))
    return EmailWorker(
        services.session_factory,
        services.notifications.contacts,
        mailer,
        Links(settings.base_url),
        sender=mailer.sender,
        lease_seconds=settings.email_lease_seconds,
        max_attempts=settings.email_max_attempts,
        backoff_seconds=settings.email_backoff_seconds,
        confirmation_hours=settings.email_confirmation_hours,
    )
