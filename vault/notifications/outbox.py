"""The e-mail outbox: which e-mails to send, and sending each one once.

Rows come from the notification outbox (``enqueue_notifications``, called by the delivery
worker in the transaction that hands each notification on) and from the patient's own
requests (an address to confirm, an export ready). The worker then:

1. **claims** due rows in a short transaction (``FOR UPDATE SKIP LOCKED``): each becomes
   ``sending`` with a lease (``next_attempt_at`` moves to the end of the lease) and gets its
   Message-ID, fixed before any SMTP conversation and never changed afterwards;
2. **sends** with no transaction open;
3. **records** the outcome: ``sent``; or ``pending`` again with exponential backoff; or
   ``dead`` after the last attempt or a permanent refusal (a dead letter, which
   ``vault notifications replay`` puts back).

Delivery is **at least once**: a worker that dies between the server's acceptance and
step 3 leaves the row ``sending``; once its lease runs out another worker sends it again,
with the same Message-ID, which mail stores and clients use to recognise a repeat. We chose
that over at most once because the e-mail that would be lost is the one telling a patient
that their record was read in an emergency: a rare duplicate is the lesser harm. The
window is one message wide (each row is recorded as soon as it is sent).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from vault.audit.delivery import DeliveryError
from vault.db import Session, SessionFactory
from vault.models import NotificationContact, NotificationEmail
from vault.models.base import as_utc, utcnow
from vault.notifications import repository, templates
from vault.notifications.contacts import ContactKeys, events_of
from vault.notifications.mail import Mailer

log = logging.getLogger("vault.notifications")


def enqueue_notifications(session: Session, due: Sequence[tuple[int, str, str]]) -> int:
    """One e-mail for each ``(notification id, patient id, kind)`` whose patient has a
    confirmed address and wants that kind; a notification already queued is left alone
    (the delivery worker may hand one on more than once). Returns how many were queued."""
    patients = sorted({patient for _, patient, kind in due if kind in templates.TEMPLATES})
    if not patients:
        return 0
    contacts = {row.patient_id: row for row in repository.contacts_wishes(session, patients)}
    now = utcnow()
    rows = [
        {
            "created_at": now,
            "patient_id": patient,
            "notification_id": notification,
            "kind": kind,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
        }
        for notification, patient, kind in due
        if (contact := contacts.get(patient)) is not None
        and contact.confirmed_at is not None
        and kind in events_of(contact.events)
    ]
    if not rows:
        return 0
    repository.queue_emails(session, rows)
    return len(rows)


def enqueue_one(session: Session, patient_id: str, kind: str, **fields: Any) -> NotificationEmail:
    """An e-mail that no outbox notification stands for (an address to confirm)."""
    now = utcnow()
    row = NotificationEmail(
        created_at=now,
        patient_id=patient_id,
        kind=kind,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        **fields,
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    patient_id: str
    kind: str
    message_id: str
    attempts: int
    contact_version: int | None
    secret_ciphertext: bytes | None
    secret_dek: bytes | None
    kek_id: str | None


@dataclass
class EmailStats:
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class Links:
    """The links e-mails carry, all under the vault's public base URL: the space, and
    its two pages that work without signing in (the link is the credential)."""

    base_url: str

    def space(self) -> str:
        return self.base_url.rstrip("/") + "/"

    def confirm(self, token: str) -> str:
        return f"{self.base_url.rstrip('/')}/courriel/confirmer?{urlencode({'token': token})}"

    def unsubscribe(self, patient_id: str, token: str) -> str:
        query = urlencode({"record": patient_id, "token": token})
        return f"{self.base_url.rstrip('/')}/courriel/desinscription?{query}"


class EmailWorker:
    def __init__(
        self,
        factory: SessionFactory,
        contacts: ContactKeys,
        mailer: Mailer,
        links: Links,
        *,
        sender: str,
        lease_seconds: float = 300.0,
        max_attempts: int = 8,
        backoff_seconds: float = 60.0,
        backoff_cap_seconds: float = 6 * 3600.0,
        confirmation_hours: int = 48,
        batch_size: int = 20,
    ) -> None:
        self._factory = factory
        self._contacts = contacts
        self.mailer = mailer
        self._links = links
        self._sender = sender
        self._lease = timedelta(seconds=lease_seconds)
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._cap = backoff_cap_seconds
        self._hours = confirmation_hours
        self._batch = batch_size
        self._domain = urlsplit(links.base_url).hostname or "vault.invalid"

    def run_once(self, now: datetime | None = None, limit: int = 500) -> EmailStats:
        stats = EmailStats()
        while limit > 0:
            moment = now or utcnow()
            claimed = self.claim(moment, min(limit, self._batch))
            if not claimed:
                break
            limit -= len(claimed)
            for row in claimed:
                outcome = self._deliver(row, moment)
                setattr(stats, outcome, getattr(stats, outcome) + 1)
        return stats

    def claim(self, now: datetime, batch: int) -> list[Claimed]:
        """Step 1: take due rows (and rows whose worker's lease ran out) for this worker."""
        with self._factory() as session, session.begin():
            rows = repository.due_emails(session, now, batch)
            claimed: list[Claimed] = []
            for row in rows:
                # Unique without the host name or the clock make_msgid would add.
                message_id = (
                    row.message_id or f"<vault-{row.id}.{secrets.token_hex(8)}@{self._domain}>"
                )
                repository.lease_email(session, row.id, message_id, now + self._lease)
                claimed.append(
                    Claimed(
                        row.id,
                        row.patient_id,
                        row.kind,
                        message_id,
                        row.attempts,
                        row.contact_version,
                        row.secret_ciphertext,
                        row.secret_dek,
                        row.kek_id,
                    )
                )
            return claimed

    def _deliver(self, row: Claimed, now: datetime) -> str:
        message = self.compose(row, now)
        if message is None:
            self._finish(row, "skipped", now)
            return "skipped"
        try:
            self.mailer.send(message)
        except DeliveryError as error:
            return self._failed(row, error, now)
        self._finish(row, "sent", now)
        return "sent"

    def compose(self, row: Claimed, now: datetime) -> EmailMessage | None:
        """The e-mail as it will leave, or None when it should not go any more: the
        patient removed or changed the address, opted out of the kind, or the link to
        confirm has expired."""
        with self._factory() as session, session.begin():
            contact = session.get(NotificationContact, row.patient_id)
            if contact is None:
                return None
            address = self._contacts.address(session, contact)
            if address is None:
                return None
            if row.kind == templates.CONFIRMATION:
                token = self._contacts.open_secret(
                    session,
                    row.patient_id,
                    row.id,
                    row.secret_ciphertext,
                    row.secret_dek,
                    row.kek_id,
                )
                expired = (
                    contact.confirm_expires_at is None or as_utc(contact.confirm_expires_at) <= now
                )
                if row.contact_version != contact.version or token is None or expired:
                    return None
                rendered = templates.render_confirmation(
                    confirm_url=self._links.confirm(token), hours=self._hours
                )
                unsubscribe = None
            else:
                if contact.confirmed_at is None or row.kind not in events_of(contact.events):
                    return None
                unsubscribe = self._links.unsubscribe(
                    row.patient_id,
                    self._contacts.unsubscribe_token(row.patient_id, contact.version),
                )
                rendered = templates.render(
                    row.kind, space_url=self._links.space(), unsubscribe_url=unsubscribe
                )
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = address
        message["Subject"] = rendered.subject
        message["Date"] = format_datetime(now)
        message["Message-ID"] = row.message_id
        message["Auto-Submitted"] = "auto-generated"
        if unsubscribe is not None:
            # RFC 8058 one-click: the mail client POSTs "List-Unsubscribe=One-Click" here.
            message["List-Unsubscribe"] = f"<{unsubscribe}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(rendered.text)
        # After set_content, which replaces every Content-* header.
        message["Content-Language"] = "fr"
        return message

    def _finish(self, row: Claimed, status: str, now: datetime) -> None:
        with self._factory() as session, session.begin():
            repository.record_attempt(
                session,
                row.id,
                row.message_id,
                status=status,
                attempts=row.attempts + (1 if status == "sent" else 0),
                sent_at=now if status == "sent" else None,
                lease_until=None,
                last_error=None,
                # A confirmation token has no business staying once it has left.
                secret_ciphertext=None,
                secret_dek=None,
            )

    def _failed(self, row: Claimed, error: DeliveryError, now: datetime) -> str:
        attempts = row.attempts + 1
        if error.permanent or attempts >= self._max_attempts:
            log.warning("e-mail %s given up: %s", row.id, error.reason[:64])
            status, next_attempt, outcome = "dead", now, "dead"
        else:
            delay = min(self._cap, self._backoff * 2 ** (attempts - 1))
            status, next_attempt, outcome = "pending", now + timedelta(seconds=delay), "retrying"
        with self._factory() as session, session.begin():
            repository.record_attempt(
                session,
                row.id,
                row.message_id,
                status=status,
                attempts=attempts,
                next_attempt_at=next_attempt,
                lease_until=None,
                last_error=error.reason[:64],
            )
        return outcome


@dataclass(frozen=True)
class DeadLetter:
    id: int
    kind: str
    patient_id: str
    attempts: int
    last_error: str | None
    created_at: datetime
    failed_at: datetime


def dead_letters(factory: SessionFactory, limit: int = 100) -> list[DeadLetter]:
    with factory() as session:
        return [DeadLetter(*row) for row in repository.dead_emails(session, limit)]


class NotDead(LookupError):
    """Only a dead letter can be replayed."""


def replay(factory: SessionFactory, email_id: int, now: datetime | None = None) -> None:
    """A dead letter goes back to the queue with its attempts reset and its Message-ID kept
    (it was never accepted by a server, or a repeat is recognisable)."""
    with factory() as session, session.begin():
        if repository.requeue_dead(session, email_id, now or utcnow()) != 1:
            raise NotDead(f"no dead letter with id {email_id}")
