"""Sending the e-mail outbox: STARTTLS and authentication against a real server, retries
with backoff, dead letters an operator lists and replays from the command line, and what
happens when a worker dies in the middle of a send (at least once, same Message-ID)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.factories import create_patient
from tests.notifications.conftest import (
    ADDRESS,
    email_worker,
    plain_settings,
    prefs_url,
)
from tests.notifications.smtp_server import SmtpServer, self_signed
from vault.cli import app as cli
from vault.models import NotificationEmail
from vault.models.base import utcnow
from vault.notifications.mail import SmtpMailer
from vault.settings import get_settings


class WorkerDied(BaseException):
    """Stands for the process being killed: nothing in the worker catches it."""


class DiesAfterSending:
    def __init__(self, inner: SmtpMailer) -> None:
        self.inner = inner

    def send(self, message) -> None:
        self.inner.send(message)
        raise WorkerDied


def _queue_confirmation(client, tokens, seed: int) -> str:
    patient_id, ins_value = create_patient(client, tokens, seed=seed)
    response = client.put(
        prefs_url(patient_id, "/address"),
        json={"address": ADDRESS},
        headers=tokens.patient(ins_value),
    )
    assert response.status_code == 202
    return patient_id


def _rows(services) -> list[NotificationEmail]:
    with services.session_factory() as session:
        return list(session.scalars(select(NotificationEmail).order_by(NotificationEmail.id)))


@pytest.fixture
def tls_server(tmp_path):
    cert, key = self_signed(tmp_path)
    with SmtpServer(tls=(cert, key), credentials=("vault", "s3cret")) as server:
        yield server, cert


def test_starttls_with_authentication_delivers(client, tokens, services, tls_server):
    server, cert = tls_server
    _queue_confirmation(client, tokens, 60)
    mailer = SmtpMailer(
        plain_settings(
            server, security="starttls", username="vault", password="s3cret", ca_file=cert
        )
    )
    assert email_worker(services, mailer).run_once().sent == 1
    assert server.logins == ["vault"]
    assert [rcpt for rcpt, _ in server.mailbox.received] == [[ADDRESS]]


def test_an_untrusted_certificate_is_refused_and_retried(client, tokens, services, tls_server):
    server, _ = tls_server
    _queue_confirmation(client, tokens, 61)
    # The system's CAs do not know the test certificate: nothing may be sent.
    mailer = SmtpMailer(
        plain_settings(server, security="starttls", username="vault", password="s3cret")
    )
    stats = email_worker(services, mailer).run_once()
    assert (stats.sent, stats.retrying) == (0, 1)
    assert server.mailbox.received == []
    assert server.logins == []
    (row,) = _rows(services)
    assert row.status == "pending"
    assert row.last_error == "SSLCertVerificationError"


def test_failures_back_off_then_die_and_an_operator_replays_them(
    client, tokens, services, settings, tls_server, monkeypatch
):
    server, cert = tls_server
    _queue_confirmation(client, tokens, 62)
    wrong = SmtpMailer(
        plain_settings(server, security="starttls", username="vault", password="nope", ca_file=cert)
    )
    worker = email_worker(services, wrong, max_attempts=3, backoff_seconds=60.0)
    start = utcnow()
    assert worker.run_once(now=start).retrying == 1
    (row,) = _rows(services)
    assert (row.attempts, row.next_attempt_at - start) == (1, timedelta(seconds=60))
    assert row.last_error == "smtp 535"
    assert worker.run_once(now=start + timedelta(seconds=30)).retrying == 0
    later = start + timedelta(seconds=61)
    assert worker.run_once(now=later).retrying == 1
    (row,) = _rows(services)
    assert (row.attempts, row.next_attempt_at - later) == (2, timedelta(seconds=120))
    assert worker.run_once(now=later + timedelta(seconds=121)).dead == 1
    (row,) = _rows(services)
    assert row.status == "dead"

    for name, value in {
        "VAULT_DATABASE_URL": settings.database_url,
        "VAULT_DATA_DIR": str(settings.data_dir),
        "VAULT_BASE_URL": settings.base_url,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        listed = CliRunner().invoke(cli, ["notifications", "dead-letters"])
        assert listed.exit_code == 0, listed.output
        assert f"{row.id}\taddress-confirmation\t{row.patient_id}\t3\tsmtp 535" in listed.stdout
        assert ADDRESS not in listed.stdout
        missing = CliRunner().invoke(cli, ["notifications", "replay", str(row.id + 1000)])
        assert missing.exit_code == 1
        assert "no dead letter" in missing.stderr
        replayed = CliRunner().invoke(cli, ["notifications", "replay", str(row.id)])
        assert replayed.exit_code == 0, replayed.output
        again = CliRunner().invoke(cli, ["notifications", "replay", str(row.id)])
        assert again.exit_code == 1
    finally:
        get_settings.cache_clear()

    right = SmtpMailer(
        plain_settings(
            server, security="starttls", username="vault", password="s3cret", ca_file=cert
        )
    )
    assert email_worker(services, right).run_once().sent == 1
    (row,) = _rows(services)
    assert row.status == "sent"
    assert row.secret_ciphertext is None


def test_a_permanent_refusal_is_a_dead_letter_at_once(client, tokens, services, smtp):
    _queue_confirmation(client, tokens, 63)
    smtp.mailbox.refuse_with = "550 5.1.1 No such mailbox"
    stats = email_worker(services, SmtpMailer(plain_settings(smtp))).run_once()
    assert (stats.dead, stats.retrying) == (1, 0)
    (row,) = _rows(services)
    assert (row.status, row.attempts, row.last_error) == ("dead", 1, "smtp 550")


def test_a_worker_dying_after_the_server_accepted_sends_again_with_the_same_message_id(
    client, tokens, services, smtp
):
    _queue_confirmation(client, tokens, 64)
    mailer = SmtpMailer(plain_settings(smtp))
    start = utcnow()
    with pytest.raises(WorkerDied):
        email_worker(services, DiesAfterSending(mailer), lease_seconds=300).run_once(now=start)
    (row,) = _rows(services)
    assert row.status == "sending"
    survivor = email_worker(services, mailer, lease_seconds=300)
    # While the dead worker's lease runs, nobody else takes the message.
    assert survivor.run_once(now=start + timedelta(seconds=299)).sent == 0
    assert survivor.run_once(now=start + timedelta(seconds=301)).sent == 1
    assert survivor.run_once(now=start + timedelta(seconds=900)).sent == 0
    first, second = smtp.mailbox.messages()
    assert first["Message-ID"].strip() == second["Message-ID"].strip() == row.message_id
    (row,) = _rows(services)
    assert (row.status, row.attempts) == ("sent", 1)


def test_a_worker_dying_before_it_sent_leaves_the_message_to_be_sent_once(
    client, tokens, services, smtp
):
    _queue_confirmation(client, tokens, 65)
    worker = email_worker(services, SmtpMailer(plain_settings(smtp)), lease_seconds=120)
    start = utcnow()
    (claimed,) = worker.claim(start, 10)  # ... and the process is killed here.
    other = email_worker(services, SmtpMailer(plain_settings(smtp)), lease_seconds=120)
    assert other.run_once(now=start).sent == 0
    assert other.run_once(now=start + timedelta(seconds=121)).sent == 1
    (message,) = smtp.mailbox.messages()
    assert message["Message-ID"].strip() == claimed.message_id
