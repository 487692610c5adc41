"""Delivering the notification outbox: each row to a pluggable sender, once.

Notifications go in batches, one transaction each: the rows are claimed with ``FOR UPDATE
SKIP LOCKED`` (so workers in several processes never take the same one), sent one by one,
and marked delivered in the same transaction. A crash between a receiver's 2xx and the
commit can only re-send (at most the rest of its batch), never lose; the payload's ``id``
(also the ``Idempotency-Key`` header) lets receivers drop such a repeat. A failed send is retried later with exponential backoff, and given up ("dead")
after ``max_attempts``. A new document still hidden from the patient is held back until
its author announces it, and so is any other notification about a document hidden from
the patient (the access module decides which).

A second channel may take each notification on in the same transaction (``fan_out``): the
e-mail outbox (``vault/notifications/outbox.py``) queues its e-mails there, whatever the
webhook answers, so the two channels fail and retry apart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx

from vault.access.policy import known_to_patient
from vault.audit import repository
from vault.audit.checkpoints import format_time
from vault.audit.history import document_of
from vault.audit.repository import delivery as outbox
from vault.db import Session, SessionFactory
from vault.documents.repository import facts
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


@dataclass(frozen=True, slots=True)
class Due:
    """An outbox row claimed for delivery."""

    id: int
    kind: str
    patient_id: str
    created_at: datetime
    audit_entry_id: int
    actor_role: str
    actor_id: str | None
    attempts: int
    recipient: str | None


def message_of(row: Due) -> dict[str, Any]:
    """What leaves the vault: identifiers and the kind of event, never health content."""
    return {
        "id": row.id,
        "type": row.kind,
        "patient": row.patient_id,
        "occurredAt": format_time(row.created_at),
        "auditEvent": str(row.audit_entry_id),
        "actor": {"role": row.actor_role, "id": row.actor_id},
        # Absent: for the patient. Otherwise for the holder of this representation.
        **({"to": {"representation": row.recipient}} if row.recipient else {}),
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


# What a claim reads of each notification, in Due's order.
_DUE = tuple(field.name for field in fields(Due))


@dataclass
class DeliveryStats:
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    held: int = 0


def _not_yet_announced(session: Session, rows: list[Due]) -> set[int]:
    """The notifications about a document the patient may not know of yet (a result
    awaiting its announcement): the access module decides, as for the history."""
    entries = repository.entries_by_id(session, [row.audit_entry_id for row in rows])
    named = {entry.id: document_of(entry) for entry in entries}
    documents = repository.documents_by_id(
        session,
        {
            (entry.patient_id, document_id)
            for entry in entries
            if entry.patient_id is not None and (document_id := named[entry.id])
        },
    )
    held = set()
    for row in rows:
        document_id = named.get(row.audit_entry_id)
        document = documents.get(document_id) if document_id else None
        if document is not None and not known_to_patient(facts(document)):
            held.add(row.id)
    return held


class DeliveryWorker:
    def __init__(
        self,
        factory: SessionFactory,
        sender: Sender,
        *,
        max_attempts: int = 10,
        backoff_seconds: float = 30.0,
        backoff_cap_seconds: float = 6 * 3600.0,
        batch_size: int = 50,
        fan_out: Callable[[Session, list[tuple[int, str, str]]], object] | None = None,
    ) -> None:
        self._factory = factory
        self._fan_out = fan_out
        self.sender = sender
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._cap = backoff_cap_seconds
        self._batch = batch_size

    def run_once(self, now: datetime | None = None, limit: int = 1000) -> DeliveryStats:
        """Work through what is due at ``now``; returns what happened."""
        stats = DeliveryStats()
        # One attempt per notification per round, even when its retry is due at once.
        tried: list[int] = []
        while limit > 0:
            outcomes = self._deliver_batch(now or utcnow(), tried, min(limit, self._batch))
            if not outcomes:
                break
            for outcome in outcomes:
                setattr(stats, outcome, getattr(stats, outcome) + 1)
            limit -= len(outcomes)
        return stats

    def _deliver_batch(self, now: datetime, tried: list[int], batch: int) -> list[str]:
        with self._factory() as session, session.begin():
            rows = [Due(*row) for row in outbox.claim_due(session, _DUE, now, batch, tried)]
            held = _not_yet_announced(session, rows)
            if self._fan_out is not None:
                self._fan_out(
                    session,
                    [(row.id, row.patient_id, row.kind) for row in rows if row.id not in held],
                )
            outcomes: list[str] = []
            delivered: list[int] = []
            failed: list[dict[str, Any]] = []
            for row in rows:
                if row.id in held:
                    # Checked again later, without using up attempts: the day the author
                    # lifts the label, the patient hears about the document.
                    outcomes.append("held")
                    tried.append(row.id)
                    continue
                try:
                    self.sender.send(message_of(row))
                except DeliveryError as error:
                    outcomes.append(self._failed(row, error, now, failed))
                    if outcomes[-1] == "retrying":
                        # Only a row still pending could come round again; delivered and
                        # dead ones leave the query by their status, and keep the list short.
                        tried.append(row.id)
                    continue
                outcomes.append("delivered")
                delivered.append(row.id)
            if delivered:
                outbox.mark_delivered(session, delivered, now)
            if held:
                later = now + timedelta(seconds=max(self._backoff, 1.0))
                outbox.hold(session, sorted(held), later)
            if failed:
                outbox.record_failures(session, failed)
            return outcomes

    def _failed(
        self, row: Due, error: DeliveryError, now: datetime, failed: list[dict[str, Any]]
    ) -> str:
        attempts = row.attempts + 1
        reason = error.reason[:64]
        if error.permanent or attempts >= self._max_attempts:
            log.warning("notification %s given up: %s", row.id, reason)
            status, next_attempt, outcome = "dead", None, "dead"
        else:
            delay = min(self._cap, self._backoff * 2 ** (attempts - 1))
            status, next_attempt, outcome = "pending", now + timedelta(seconds=delay), "retrying"
        failed.append(
            {
                "row_id": row.id,
                "row_attempts": attempts,
                "row_error": reason,
                "row_status": status,
                "row_next": next_attempt,
            }
        )
        return outcome


def sender_from_settings(
    webhook_url: str, secret: str | None, *, retries: int = 2, backoff: float = 0.5
) -> Sender:
    if webhook_url:
        return WebhookSender(webhook_url, secret=secret, retries=retries, backoff=backoff)
    return LogSender()
