from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.notifications.smtp_server import SmtpServer
from vault.audit.delivery import DeliveryWorker, LogSender
from vault.notifications.mail import SmtpMailer, SmtpSettings
from vault.notifications.outbox import EmailWorker, Links, enqueue_notifications

SENDER = "Mon espace santé <no-reply@vault.test>"
ADDRESS = "claire.martin@example.org"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def plain_settings(server: SmtpServer, **changes: object) -> SmtpSettings:
    base = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "username": "",
        "password": None,
        "sender": SENDER,
        "ca_file": None,
        "timeout": 10.0,
    }
    return SmtpSettings(**{**base, **changes})  # type: ignore[arg-type]


def email_worker(services, mailer, **options) -> EmailWorker:
    return EmailWorker(
        services.session_factory,
        services.notifications.contacts,
        mailer,
        Links("http://testserver"),
        sender=SENDER,
        **{"backoff_seconds": 60.0, "lease_seconds": 300.0, "max_attempts": 3, **options},
    )


@pytest.fixture
def emails(services, smtp) -> EmailWorker:
    return email_worker(services, SmtpMailer(plain_settings(smtp)))


@pytest.fixture
def outbox(services) -> DeliveryWorker:
    """The notification outbox's worker, handing each notification to the e-mail outbox."""
    return DeliveryWorker(services.session_factory, LogSender(), fan_out=enqueue_notifications)


def prefs_url(patient_id: str, rest: str = "") -> str:
    return f"/api/patients/{patient_id}/notifications{rest}"


def token_in(text: str) -> str:
    found = re.search(r"token=([A-Za-z0-9_\-]+)", text)
    assert found is not None, text
    return found.group(1)


def confirmed_address(client, headers, patient_id, emails: EmailWorker, smtp: SmtpServer) -> None:
    """The whole confirmation: set the address, send the link, follow it."""
    response = client.put(
        prefs_url(patient_id, "/address"), json={"address": ADDRESS}, headers=headers
    )
    assert response.status_code == 202, response.text
    before = len(smtp.mailbox.received)
    assert emails.run_once().sent == 1
    link = smtp.mailbox.messages()[before].get_content()
    followed = client.post(f"/api/notifications/confirm?token={token_in(link)}")
    assert followed.status_code == 200, followed.text
