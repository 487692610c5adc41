"""Item 9 of issue 12, the flooding scenario: one attacker's afternoon of refused probes
against a patient's record. Every refusal stays in the log, and the patient's history
stays readable: their own and their doctors' accesses on the first page, the attacker's
refusals one event."""

from __future__ import annotations

import itertools

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.factories import DOCTOR, INS_SYSTEM, create_patient, publish
from vault.api.app import create_app
from vault.audit.events import REFUSALS_EXTENSION
from vault.models import AuditEntry
from vault.settings import Settings

PROBES = 200


def _plain(headers: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key != "Content-Type"}


def _flood(client: TestClient, tokens, services) -> dict:
    _, attacker_ins = create_patient(client, tokens, seed=61)
    victim_id, victim_ins = create_patient(client, tokens, seed=62)
    doctor = _plain(tokens.professional(DOCTOR))
    stored = [publish(client, doctor, victim_id, f"%PDF-1.7 {n}".encode()) for n in range(3)]
    victim = _plain(tokens.patient(victim_ins))
    for document in stored:
        assert (
            client.get(f"/fhir/DocumentReference/{document['id']}", headers=victim).status_code
            == 200
        )
    with services.session_factory() as session:
        legitimate = int(
            session.scalar(
                select(func.count()).where(
                    AuditEntry.patient_id == victim_id, AuditEntry.outcome != "denied"
                )
            )
            or 0
        )
    binary = stored[0]["content"][0]["attachment"]["url"].rsplit("/", 1)[1]
    probes = itertools.cycle(
        [
            f"/fhir/DocumentReference/{stored[0]['id']}",
            f"/fhir/Binary/{binary}",
            f"/fhir/DocumentReference?patient={victim_id}",
            f"/fhir/DocumentReference?patient.identifier={INS_SYSTEM}|{victim_ins}",
            f"/fhir/AuditEvent?patient={victim_id}",
            f"/fhir/Patient/{victim_id}",
        ]
    )
    attacker = _plain(tokens.patient(attacker_ins))
    statuses = [client.get(next(probes), headers=attacker).status_code for _ in range(PROBES)]
    return {
        "victim_id": victim_id,
        "victim": victim,
        "legitimate": legitimate,
        "statuses": statuses,
    }


def _first_page(client: TestClient, world: dict) -> list[dict]:
    response = client.get(f"/fhir/AuditEvent?patient={world['victim_id']}", headers=world["victim"])
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json()["entry"]]


def _refusals_in(events: list[dict]) -> list[int]:
    counts = []
    for event in events:
        if event["outcome"] != "4":
            continue
        grouped = [e for e in event.get("extension") or [] if e["url"].endswith(REFUSALS_EXTENSION)]
        counts.append(int(grouped[0]["valueInteger"]) if grouped else 1)
    return counts


def _denied_in_log(services, patient_id: str) -> int:
    with services.session_factory() as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    AuditEntry.patient_id == patient_id, AuditEntry.outcome == "denied"
                )
            )
            or 0
        )


def test_after_a_flood_of_refused_probes_the_patients_history_stays_readable(
    settings, services, tokens
):
    """With the throttle out of the way, grouping alone keeps the history readable."""
    roomy = settings.model_copy(update={"refusal_limit": 10 * PROBES})
    with TestClient(create_app(roomy, services), raise_server_exceptions=False) as client:
        world = _flood(client, tokens, services)
        assert set(world["statuses"]) <= {200, 404}
        events = _first_page(client, world)

    refused_in_log = _denied_in_log(services, world["victim_id"])
    assert refused_in_log == PROBES
    # One event for the attacker, counting every refusal the log holds for them...
    assert _refusals_in(events) == [refused_in_log]
    # ...and everything else on the first page beside it.
    assert len(events) == world["legitimate"] + 1 + 1  # + the history read being answered


def test_a_flooding_actor_is_throttled_and_the_log_stops_growing(settings, tokens, services):
    shipped = settings.model_copy(
        update={"refusal_limit": Settings.model_fields["refusal_limit"].default}
    )
    with TestClient(create_app(shipped, services), raise_server_exceptions=False) as client:
        world = _flood(client, tokens, services)
        events = _first_page(client, world)

    assert 429 in world["statuses"]
    first_throttled = world["statuses"].index(429)
    # Once throttled, the rest of the flood is turned away without reaching a record.
    assert set(world["statuses"][first_throttled:]) == {429}
    assert _denied_in_log(services, world["victim_id"]) < PROBES // 2
    assert len(_refusals_in(events)) == 1
