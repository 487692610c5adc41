"""Sending one e-mail over SMTP (the standard library's client): STARTTLS or implicit TLS
with certificate checks, and authentication, from the settings."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Literal, Protocol

from vault.audit.delivery import DeliveryError
from vault.errors import VaultError

Security = Literal["starttls", "tls", "none"]


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Hand the message to the mail server or raise DeliveryError."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: Security
    username: str
    password: str | None
    sender: str
    ca_file: Path | None
    timeout: float


class SmtpMailer:
    """One connection per message: notifications are few and far between, and a fresh
    connection never inherits a half-broken session from an earlier failure."""

    def __init__(self, settings: SmtpSettings) -> None:
        if settings.username and settings.security == "none":
            raise VaultError("VAULT_SMTP_USERNAME needs VAULT_SMTP_SECURITY starttls or tls")
        if not settings.sender:
            raise VaultError("VAULT_SMTP_SENDER (the From: address) is required for e-mail")
        self.settings = settings
        self._context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None
        )

    @property
    def sender(self) -> str:
        return self.settings.sender

    def send(self, message: EmailMessage) -> None:
        config = self.settings
        try:
            if config.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    config.host, config.port, timeout=config.timeout, context=self._context
                )
            else:
                client = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            with client:
                if config.security == "starttls":
                    client.starttls(context=self._context)
                if config.username:
                    client.login(config.username, config.password or "")
                client.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            raise DeliveryError(
                f"smtp {codes[0] if codes else 'refused'}",
                permanent=bool(codes) and all(code >= 500 for code in codes),
            ) from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
            # A 5xx about this message will not change by retrying; a 4xx may.
            raise DeliveryError(
                f"smtp {error.smtp_code}", permanent=error.smtp_code >= 500
            ) from None
        except smtplib.SMTPResponseException as error:
            # Authentication and other session replies: the operator may fix the settings,
            # so these are retried and, if they last, end as dead letters to replay.
            raise DeliveryError(f"smtp {error.smtp_code}") from None
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError(type(error).__name__) from None
