"""Delivering the notification outbox: each row to a pluggable sender, once.

One notification per transaction: the row is claimed with ``FOR UPDATE SKIP LOCKED`` (so
workers in several processes never take the same one), sent, and marked delivered in the
same transaction. A crash between a receiver's 2xx and the commit can only re-send, never
lose; the payload's ``id`` (also the ``Idempotency-Key`` header) lets receivers drop such a
repeat. A failed send is retried later with exponential backoff, and given up ("dead")
after ``max_attempts``. A new document still hidden from the patient is held back until
its author announces it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vault.access.state import INVISIBLE_PATIENT
from vault.audit import repository
from vault.audit.checkpoints import format_time
from vault.documents.repository import labels_of
from vault.models import AuditNotification
from vault.models.base import utcnow

log = logging.getLogger("vault.audit.notifications")


class DeliveryError(Exception):
    """A send that may succeed if tried again later."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Sender(Protocol):
    def send(self, message: dict[str, Any]) -> None:
        """Deliver or raise DeliveryError."""


def message_of(row: AuditNotification) -> dict[str, Any]:
    """What leaves the vault: identifiers and the kind of event, never health content."""
    return {
        "id": row.id,
        "type": row.kind,
        "patient": row.patient_id,
        "occurredAt": format_time(row.created_at),
        "auditEvent": str(row.audit_entry_id),
        "actor": {"role": row.actor_role, "id": row.actor_id},
    }


class LogSender:
    """For development: says that a notification would go out, naming nobody."""

    def send(self, message: dict[str, Any]) -> None:
        log.info("notification %s (%s) delivered to the log", message["id"], message["type"])


class WebhookSender:
    """POSTs the message as JSON; 2xx is delivered. Retries timeouts, connection errors,
    408, 429 and 5xx a few times with exponential backoff before handing the failure to
    the outbox (which retries later); other 4xx are permanent. With a secret, the body is
    signed: ``X-Vault-Signature: sha256=HMAC(secret, timestamp "." body)``."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self._secret = secret.encode() if secret else None
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"vault-notification-{message['id']}",
        }
        if self._secret is not None:
            stamp = str(int(time.time()))
            digest = hmac.new(self._secret, stamp.encode() + b"." + body, hashlib.sha256)
            headers["X-Vault-Timestamp"] = stamp
            headers["X-Vault-Signature"] = f"sha256={digest.hexdigest()}"
        failure = DeliveryError("not sent")
        for attempt in range(self._retries + 1):
            if attempt:
                self._sleep(self._backoff * 2 ** (attempt - 1))
            try:
                response = self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as error:
                failure = DeliveryError(type(error).__name__)
                continue
            if response.is_success:
                return
            retryable = response.status_code in (408, 429) or response.status_code >= 500
            failure = DeliveryError(f"http {response.status_code}", permanent=not retryable)
            if not retryable:
                break
        raise failure

    def close(self) -> None:
        self._client.close()


@dataclass
class DeliveryStats:
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    held: int = 0


def _not_yet_announced(session: Session, row: AuditNotification) -> bool:
    """A new document the patient may not see yet (a result awaiting its announcement)
    must not be announced by its notification either."""
    if row.kind != "new-document":
        return False
    labels = repository.labels_of_audited_document(session, row.audit_entry_id)
    return labels is not None and INVISIBLE_PATIENT in labels_of(labels)


class DeliveryWorker:
    def __init__(
        self,
        factory: sessionmaker[Session],
        sender: Sender,
        *,
        max_attempts: int = 10,
        backoff_seconds: float = 30.0,
        backoff_cap_seconds: float = 6 * 3600.0,
    ) -> None:
        self._factory = factory
        self.sender = sender
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._cap = backoff_cap_seconds

    def run_once(self, now: datetime | None = None, limit: int = 1000) -> DeliveryStats:
        """Work through what is due at ``now``; returns what happened."""
        stats = DeliveryStats()
        # One attempt per notification per round, even when its retry is due at once.
        tried: list[int] = []
        for _ in range(limit):
            outcome = self._deliver_next(now or utcnow(), tried)
            if outcome is None:
                break
            setattr(stats, outcome, getattr(stats, outcome) + 1)
        return stats

    def _deliver_next(self, now: datetime, tried: list[int]) -> str | None:
        with self._factory() as session, session.begin():
            query = (
                select(AuditNotification)
                .where(
                    AuditNotification.status == "pending",
                    AuditNotification.next_attempt_at <= now,
                )
                .order_by(AuditNotification.next_attempt_at, AuditNotification.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if tried:
                query = query.where(AuditNotification.id.not_in(tried))
            row = session.scalar(query)
            if row is None:
                return None
            if _not_yet_announced(session, row):
                # Checked again later, without using up attempts: the day the author lifts
                # the label, the patient hears about the document.
                row.next_attempt_at = now + timedelta(seconds=max(self._backoff, 1.0))
                tried.append(row.id)
                return "held"
            try:
                self.sender.send(message_of(row))
            except DeliveryError as error:
                row.attempts += 1
                row.last_error = error.reason[:64]
                if error.permanent or row.attempts >= self._max_attempts:
                    row.status = "dead"
                    log.warning("notification %s given up: %s", row.id, row.last_error)
                    return "dead"
                delay = min(self._cap, self._backoff * 2 ** (row.attempts - 1))
                row.next_attempt_at = now + timedelta(seconds=delay)
                # Only a row still pending could come round again; delivered and dead
                # ones leave the query by their status, and keep the list short.
                tried.append(row.id)
                return "retrying"
            row.status = "delivered"
            row.attempts += 1
            row.delivered_at = now
            row.last_error = None
            return "delivered"


def sender_from_settings(
    webhook_url: str, secret: str | None, *, retries: int = 2, backoff: float = 0.5
) -> Sender:
    if webhook_url:
        return WebhookSender(webhook_url, secret=secret, retries=retries, backoff=backoff)
    return LogSender()
