"""The notification outbox: written with the audit entry, delivered once, to a real
webhook receiver on loopback (retries, backoff, giving up) or to the log."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import event, select

from tests.access.policy_support import declare_emergency
from tests.factories import OTHER_DOCTOR, create_patient, publish
from vault.access.notifications import NotificationKind, notification_for
from vault.audit.delivery import DeliveryWorker, LogSender, WebhookSender
from vault.models import AuditEntry, AuditNotification

SECRET = "webhook-secret"


class Receiver:
    """A webhook endpoint on loopback that answers from a script of status codes."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def delivered_ids(self) -> list[int]:
        return [json.loads(body)["id"] for _, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


def _sender(receiver: Receiver, retries: int = 2) -> WebhookSender:
    return WebhookSender(receiver.url, secret=SECRET, retries=retries, backoff=0.01)


def _outbox(services) -> list[AuditNotification]:
    with services.session_factory() as session:
        return list(session.scalars(select(AuditNotification).order_by(AuditNotification.id)))


def _entry(**fields) -> AuditEntry:
    base = {
        "id": 7,
        "occurred_at": datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
        "patient_id": "patient-1",
        "action": "R",
        "outcome": "success",
        "purpose": "TREAT",
        "actor_role": "professional",
        "actor_id": "810003456789",
        "on_behalf_of": None,
        "detail": {"permission": "document:read"},
    }
    return AuditEntry(**{**base, **fields})


# -- which entries notify ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, (NotificationKind.NEW_READER, "reader:810003456789")),
        (
            {"actor_role": "software", "actor_id": "lab", "on_behalf_of": "810000000001"},
            (NotificationKind.NEW_READER, "reader:810000000001"),
        ),
        (
            {"purpose": "ETREAT"},
            (NotificationKind.EMERGENCY_ACCESS, "emergency:810003456789:2026-11-24"),
        ),
        (
            {"actor_role": "caregiver", "actor_id": "carer", "purpose": "SUPNWK"},
            (NotificationKind.DELEGATION_USED, "delegation-used:carer:2026-11-24"),
        ),
        (
            {
                "action": "C",
                "actor_role": "patient",
                "actor_id": "parent-record",
                "detail": {"permission": "delegation:grant"},
            },
            (NotificationKind.DELEGATION_GRANTED, "delegation-granted:7"),
        ),
        (
            {"action": "C", "detail": {"permission": "document:create"}},
            (NotificationKind.NEW_DOCUMENT, "document:7"),
        ),
        ({"outcome": "denied"}, None),
        ({"actor_role": "patient", "actor_id": "patient-1"}, None),
        ({"actor_role": "operator", "actor_id": "ops"}, None),
        ({"patient_id": None}, None),
        ({"detail": {"permission": "patient:read"}}, None),
    ],
)
def test_each_kind_of_entry_calls_for_its_notification(fields, expected):
    assert notification_for(_entry(**fields)) == expected


def test_the_outbox_is_written_with_the_access_and_a_reader_is_new_only_once(
    client, tokens, services
):
    patient_id, ins_value = create_patient(client, tokens, 1)
    stored = publish(client, tokens.professional(), patient_id)
    for _ in range(3):
        client.get(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional())
    client.get(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value))
    refused = client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional(OTHER_DOCTOR)
    )
    assert refused.status_code == 404

    rows = _outbox(services)

    assert [(row.kind, row.patient_id, row.status) for row in rows] == [
        ("new-document", patient_id, "pending"),
        ("new-reader", patient_id, "pending"),
    ]
    with services.session_factory() as session:
        for row in rows:
            entry = session.get(AuditEntry, row.audit_entry_id)
            assert entry is not None
            assert entry.patient_id == patient_id


# -- delivery ----------------------------------------------------------------------------


def test_each_notification_reaches_the_webhook_once_signed_and_without_phi(
    client, tokens, services, receiver
):
    patient_id, ins_value = create_patient(client, tokens, 1)
    stored = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 private")
    client.get(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional())
    worker = DeliveryWorker(services.session_factory, _sender(receiver))

    first = worker.run_once()
    second = worker.run_once()

    assert (first.delivered, second.delivered) == (2, 0)
    assert sorted(receiver.delivered_ids()) == sorted(row.id for row in _outbox(services))
    assert {row.status for row in _outbox(services)} == {"delivered"}
    for headers, body in receiver.requests:
        message = json.loads(body)
        assert message["patient"] == patient_id
        assert ins_value.encode() not in body
        assert b"private" not in body
        assert headers["Idempotency-Key"] == f"vault-notification-{message['id']}"
        expected = hmac.new(
            SECRET.encode(), headers["X-Vault-Timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        assert headers["X-Vault-Signature"] == f"sha256={expected}"


def test_a_failing_receiver_is_retried_by_the_sender_then_by_the_outbox_with_backoff(
    client, tokens, services, receiver
):
    patient_id, _ = create_patient(client, tokens, 1)
    publish(client, tokens.professional(), patient_id)
    # The sender's own attempts (1 + 2 retries) all fail; the outbox tries again later.
    receiver.statuses = [503, 502, 500, 503]
    worker = DeliveryWorker(services.session_factory, _sender(receiver), backoff_seconds=60)
    now = datetime.now(UTC)

    assert worker.run_once(now).retrying == 1
    assert worker.run_once(now).retrying == 0  # not due again yet
    (row,) = _outbox(services)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "http 500")
    assert row.next_attempt_at > now

    later = worker.run_once(now + timedelta(seconds=61))

    assert later.delivered == 1
    assert len(receiver.requests) == 5
    assert len(set(receiver.delivered_ids())) == 1
    (row,) = _outbox(services)
    assert (row.status, row.attempts) == ("delivered", 2)


def test_a_notification_is_given_up_after_its_attempts_or_on_a_client_error(
    client, tokens, services, receiver
):
    patient_id, _ = create_patient(client, tokens, 1)
    publish(client, tokens.professional(), patient_id)
    receiver.statuses = [500] * 6
    worker = DeliveryWorker(
        services.session_factory, _sender(receiver, retries=0), max_attempts=3, backoff_seconds=0
    )
    outcomes = [worker.run_once() for _ in range(3)]
    assert [(o.retrying, o.dead) for o in outcomes] == [(1, 0), (1, 0), (0, 1)]
    assert _outbox(services)[0].status == "dead"

    stored = publish(client, tokens.professional(), patient_id)
    assert stored["id"]
    receiver.statuses = [410]
    assert worker.run_once().dead == 1
    assert len(receiver.requests) == 4


def test_two_workers_at_once_deliver_every_notification_exactly_once(
    client, tokens, services, receiver
):
    for seed in range(1, 5):
        patient_id, _ = create_patient(client, tokens, seed)
        for number in range(3):
            publish(client, tokens.professional(), patient_id, f"doc {number}".encode())
    expected = sorted(row.id for row in _outbox(services))
    workers = [DeliveryWorker(services.session_factory, _sender(receiver)) for _ in range(2)]

    threads = [threading.Thread(target=worker.run_once) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(receiver.delivered_ids()) == expected
    assert len(expected) == 12


def test_the_log_sender_names_the_notification_but_not_the_patient(
    client, tokens, services, caplog
):
    patient_id, ins_value = create_patient(client, tokens, 1)
    publish(client, tokens.professional(), patient_id)
    worker = DeliveryWorker(services.session_factory, LogSender())

    with caplog.at_level(logging.INFO, logger="vault.audit.notifications"):
        assert worker.run_once().delivered == 1

    (row,) = _outbox(services)
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert str(row.id) in logged
    assert "new-document" in logged
    assert patient_id not in logged
    assert ins_value not in logged


def test_a_result_hidden_from_the_patient_is_announced_only_once_its_label_is_lifted(
    client, tokens, services, receiver
):
    patient_id, _ = create_patient(client, tokens, 1)
    stored = publish(
        client, tokens.professional(), patient_id, b"result", labels=("INVISIBLE_PATIENT",)
    )
    worker = DeliveryWorker(services.session_factory, _sender(receiver), backoff_seconds=60)
    now = datetime.now(UTC)

    held = worker.run_once(now)
    assert (held.held, held.delivered) == (1, 0)
    assert receiver.requests == []
    lifted = client.patch(
        f"/fhir/DocumentReference/{stored['id']}",
        json=[{"op": "remove", "path": "/securityLabel/0"}],
        headers={**tokens.professional(), "Content-Type": "application/json-patch+json"},
    )
    assert lifted.status_code == 200, lifted.text

    later = worker.run_once(now + timedelta(seconds=61))

    assert later.delivered == 1
    (row,) = _outbox(services)
    assert (row.kind, row.status, row.attempts) == ("new-document", "delivered", 1)


def test_an_emergency_access_is_notified_once_and_shown_as_a_privacy_disclosure(
    client, tokens, services
):
    patient_id, ins_value = create_patient(client, tokens, 1)
    stored = publish(client, tokens.professional(OTHER_DOCTOR), patient_id)
    urgentist = tokens.professional()
    declared = declare_emergency(client, urgentist, patient_id)
    assert declared.status_code == 201, declared.text
    for _ in range(2):
        read = client.get(f"/fhir/DocumentReference/{stored['id']}", headers=urgentist)
        assert read.status_code == 200

    kinds = [row.kind for row in _outbox(services)]
    history = client.get(
        f"/fhir/AuditEvent?patient={patient_id}&_count=200", headers=tokens.patient(ins_value)
    ).json()

    assert kinds.count("emergency-access") == 1
    assert "new-reader" not in kinds
    disclosures = [
        entry["resource"]
        for entry in history["entry"]
        if entry["resource"]["type"]["code"] == "110106"
    ]
    assert len(disclosures) >= 2
    assert all(d["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT" for d in disclosures)


def test_notifications_go_in_batches_one_transaction_each_and_each_once(
    client, tokens, services, receiver
):
    for seed in range(1, 3):
        patient_id, _ = create_patient(client, tokens, seed)
        for number in range(6):
            publish(client, tokens.professional(), patient_id, f"doc {number}".encode())
    expected = sorted(row.id for row in _outbox(services))
    worker = DeliveryWorker(services.session_factory, _sender(receiver), batch_size=5)
    commits: list[int] = []

    def count(_connection) -> None:
        commits.append(1)

    event.listen(services.engine, "commit", count)
    try:
        stats = worker.run_once()
    finally:
        event.remove(services.engine, "commit", count)

    assert stats.delivered == len(expected) == 12
    # 5 + 5 + 2, then one that finds nothing left.
    assert len(commits) == 4
    assert sorted(receiver.delivered_ids()) == expected
    assert {(row.status, row.attempts) for row in _outbox(services)} == {("delivered", 1)}


class _CrashingSender:
    """Delivers the first message, then fails in a way the outbox does not expect."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def send(self, message: dict) -> None:
        if self.sent:
            raise RuntimeError("process dies mid-batch")
        self.sent.append(message["id"])


def test_a_crash_mid_batch_loses_no_notification_and_only_re_sends(
    client, tokens, services, receiver
):
    patient_id, _ = create_patient(client, tokens, 1)
    for number in range(3):
        publish(client, tokens.professional(), patient_id, f"doc {number}".encode())
    expected = sorted(row.id for row in _outbox(services))
    crashing = _CrashingSender()

    with pytest.raises(RuntimeError):
        DeliveryWorker(services.session_factory, crashing).run_once()

    assert {(row.status, row.attempts) for row in _outbox(services)} == {("pending", 0)}
    assert DeliveryWorker(services.session_factory, _sender(receiver)).run_once().delivered == 3
    assert sorted(receiver.delivered_ids()) == expected
    assert crashing.sent[0] in expected
