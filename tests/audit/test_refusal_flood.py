"""Item 9 of issue 12: refusals must not flood a patient's history. Every refusal stays in
the log; the patient's view groups one actor's repeated refusals into one event with a
count; an actor refused over and over is throttled (429) and counted for operators."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.factories import DOCTOR, create_patient, publish
from vault.api.app import create_app
from vault.audit.events import REFUSALS_EXTENSION
from vault.models import AuditEntry
from vault.observability import metrics


def _plain(headers: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key != "Content-Type"}


def _denied_entries(services, patient_id: str | None) -> int:
    with services.session_factory() as session:
        query = select(func.count()).where(AuditEntry.outcome == "denied")
        query = query.where(
            AuditEntry.patient_id.is_(None)
            if patient_id is None
            else AuditEntry.patient_id == patient_id
        )
        return int(session.scalar(query) or 0)


def _grouped_count(event: dict) -> int:
    for extension in event.get("extension") or []:
        if extension["url"].endswith(REFUSALS_EXTENSION):
            return int(extension["valueInteger"])
    return 1


def _document_reads(events: list[dict], document_id: str) -> list[dict]:
    """The successful reads of the document among the events."""
    return [
        event
        for event in events
        if event["outcome"] == "0"
        and event["action"] == "R"
        and any(
            entity.get("what", {}).get("reference") == f"DocumentReference/{document_id}"
            for entity in event["entity"]
        )
    ]


@pytest.fixture
def world(client, tokens):
    _, attacker_ins = create_patient(client, tokens, seed=51)
    victim_id, victim_ins = create_patient(client, tokens, seed=52)
    stored = publish(client, tokens.professional(DOCTOR), victim_id, b"%PDF-1.7 victim")
    return {
        "attacker": _plain(tokens.patient(attacker_ins)),
        "victim": _plain(tokens.patient(victim_ins)),
        "victim_id": victim_id,
        "document": stored["id"],
        "doctor": _plain(tokens.professional(DOCTOR)),
    }


def test_one_actors_repeated_refusals_show_as_one_event_with_a_count(client, services, world):
    probes = 12
    for n in range(probes):
        assert (
            client.get(
                f"/fhir/DocumentReference/{world['document']}", headers=world["attacker"]
            ).status_code
            == 404
        )
        if n == probes // 2:
            # A legitimate access in the middle of the flood stays its own event.
            assert (
                client.get(
                    f"/fhir/DocumentReference/{world['document']}", headers=world["doctor"]
                ).status_code
                == 200
            )

    history = client.get(
        f"/fhir/AuditEvent?patient={world['victim_id']}", headers=world["victim"]
    ).json()
    events = [entry["resource"] for entry in history["entry"]]
    refused = [event for event in events if event["outcome"] == "4"]

    assert len(refused) == 1
    group = refused[0]
    assert _grouped_count(group) == probes
    assert group["period"]["start"] <= group["period"]["end"] == group["recorded"]
    assert str(probes) in group["outcomeDesc"]
    # The doctor's read is still there, on its own, and the log keeps every refusal.
    assert len(_document_reads(events, world["document"])) == 1
    assert _denied_entries(services, world["victim_id"]) == probes


def test_refusals_of_different_actors_are_not_grouped_together(client, tokens, world):
    other = _plain(tokens.professional("810000000001"))
    for headers in (world["attacker"], other, world["attacker"], other):
        client.get(f"/fhir/DocumentReference/{world['document']}", headers=headers)

    history = client.get(
        f"/fhir/AuditEvent?patient={world['victim_id']}", headers=world["victim"]
    ).json()
    refused = [e["resource"] for e in history["entry"] if e["resource"]["outcome"] == "4"]

    assert sorted(_grouped_count(event) for event in refused) == [2, 2]


def test_paging_through_a_grouped_history_loses_and_repeats_nothing(client, services, world):
    for _ in range(5):
        client.get(f"/fhir/DocumentReference/{world['document']}", headers=world["attacker"])
        client.get(f"/fhir/DocumentReference/{world['document']}", headers=world["doctor"])
    seen: list[dict] = []
    url = f"/fhir/AuditEvent?patient={world['victim_id']}&_count=2"
    while url:
        page = client.get(url, headers=world["victim"]).json()
        seen.extend(entry["resource"] for entry in page["entry"])
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)

    ids = [event["id"] for event in seen]
    assert len(ids) == len(set(ids))
    refusals = sum(_grouped_count(event) for event in seen if event["outcome"] == "4")
    assert refusals == _denied_entries(services, world["victim_id"]) == 5
    assert len(_document_reads(seen, world["document"])) == 5


@pytest.fixture
def strict_client(settings, services):
    tight = settings.model_copy(update={"refusal_limit": 5, "throttle_window_seconds": 60})
    with TestClient(create_app(tight, services), raise_server_exceptions=False) as client:
        yield client


def _throttled_requests() -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "vault_refusal_throttled_requests_total", {"role": "patient"}
        )
        or 0.0
    )


def test_an_actor_refused_over_and_over_is_throttled_and_counted(strict_client, services, world):
    before = _throttled_requests()
    answers = [
        strict_client.get(
            f"/fhir/DocumentReference/{world['document']}", headers=world["attacker"]
        ).status_code
        for _ in range(8)
    ]

    assert answers == [404] * 5 + [429] * 3
    throttled = strict_client.get(
        f"/fhir/DocumentReference/{world['document']}", headers=world["attacker"]
    )
    assert int(throttled.headers["Retry-After"]) >= 1
    body = throttled.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "throttled"
    assert _throttled_requests() - before == 4
    # A throttled request is turned away before it reaches any record: nothing is logged.
    assert _denied_entries(services, world["victim_id"]) == 5
    # Others are not held back by the attacker's refusals.
    assert (
        strict_client.get(
            f"/fhir/DocumentReference/{world['document']}", headers=world["victim"]
        ).status_code
        == 200
    )


def test_probing_ids_that_do_not_exist_is_throttled_alike(strict_client, world):
    """Otherwise the moment the throttle starts would tell existing ids from absent ones."""
    answers = [
        strict_client.get(
            f"/fhir/DocumentReference/{uuid.uuid4()}", headers=world["attacker"]
        ).status_code
        for _ in range(7)
    ]
    assert answers == [404] * 5 + [429] * 2


def test_refused_searches_count_towards_the_throttle(strict_client, world):
    answers = [
        strict_client.get(
            f"/fhir/DocumentReference?patient={world['victim_id']}", headers=world["attacker"]
        ).status_code
        for _ in range(7)
    ]
    assert answers == [200] * 5 + [429] * 2
