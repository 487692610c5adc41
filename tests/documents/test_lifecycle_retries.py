"""Idempotent retries: the same masterIdentifier with the same content is the same
submission; anything else under it is a conflict, also when two arrive at once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, text

from tests.factories import (
    DOCTOR,
    OTHER_DOCTOR,
    create_patient,
    document_reference,
    provide_bundle,
    publish,
)
from vault.models import Document

WAIT_LIMIT_SECONDS = 30


def _documents_with(services, master: str) -> int:
    with services.session_factory() as session:
        return int(
            session.scalar(select(func.count()).where(Document.master_identifier == master)) or 0
        )


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released at the same moment; return their results."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_same_master_identifier_and_content_returns_the_existing_document(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    master = f"urn:uuid:{uuid.uuid4()}"
    body = document_reference({"reference": f"Patient/{patient_id}"}, b"report", master=master)

    first = client.post("/fhir/DocumentReference", json=body, headers=tokens.professional())
    again = client.post("/fhir/DocumentReference", json=body, headers=tokens.professional())

    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.json()["meta"]["versionId"] == "1"


def test_same_master_identifier_with_other_content_is_a_conflict(client, tokens, services):
    patient_id, _ = create_patient(client, tokens)
    master = f"urn:uuid:{uuid.uuid4()}"
    subject = {"reference": f"Patient/{patient_id}"}
    client.post(
        "/fhir/DocumentReference",
        json=document_reference(subject, b"first", master=master),
        headers=tokens.professional(),
    )

    response = client.post(
        "/fhir/DocumentReference",
        json=document_reference(subject, b"second", master=master),
        headers=tokens.professional(),
    )

    assert response.status_code == 409
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "conflict"
    assert _documents_with(services, master) == 1


def test_the_same_submission_by_another_sender_gets_its_own_document_not_the_stored_one(
    client, tokens
):
    """masterIdentifiers are unique per patient and sender (issue 12, item 7): another
    sender re-sending the same body learns nothing of the stored document (no 409 to tell
    it exists, no copy of it) and cannot block the first sender's retries."""
    patient_id, _ = create_patient(client, tokens)
    master = f"urn:uuid:{uuid.uuid4()}"
    body = document_reference({"reference": f"Patient/{patient_id}"}, b"report", master=master)
    first = client.post("/fhir/DocumentReference", json=body, headers=tokens.professional())

    response = client.post(
        "/fhir/DocumentReference", json=body, headers=tokens.professional(OTHER_DOCTOR)
    )
    retried = client.post("/fhir/DocumentReference", json=body, headers=tokens.professional())

    assert response.status_code == 201
    assert response.json()["id"] != first.json()["id"]
    assert retried.status_code == 200
    assert retried.json()["id"] == first.json()["id"]


def test_a_retried_provide_bundle_answers_200_with_the_same_locations(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    bundle = provide_bundle({"reference": f"Patient/{patient_id}"}, [(b"one", "text/plain")])

    first = client.post("/fhir", json=bundle, headers=tokens.professional())
    again = client.post("/fhir", json=bundle, headers=tokens.professional())

    assert first.status_code == 200, first.text
    assert again.status_code == 200, again.text
    first_entries, again_entries = first.json()["entry"], again.json()["entry"]
    assert first_entries[1]["response"]["status"] == "201 Created"
    assert again_entries[1]["response"]["status"] == "200 OK"
    assert again_entries[1]["response"]["location"] == first_entries[1]["response"]["location"]
    assert again_entries[2]["response"]["location"] == first_entries[2]["response"]["location"]


def test_a_retry_of_a_deleted_document_is_a_conflict(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    master = f"urn:uuid:{uuid.uuid4()}"
    body = document_reference({"reference": f"Patient/{patient_id}"}, b"report", master=master)
    stored = client.post("/fhir/DocumentReference", json=body, headers=tokens.professional())
    client.delete(f"/fhir/DocumentReference/{stored.json()['id']}", headers=tokens.professional())

    response = client.post("/fhir/DocumentReference", json=body, headers=tokens.professional())

    assert response.status_code == 409


def test_two_identical_submissions_at_once_store_one_document(client, tokens, services):
    patient_id, _ = create_patient(client, tokens)
    master = f"urn:uuid:{uuid.uuid4()}"
    body = document_reference({"reference": f"Patient/{patient_id}"}, b"report", master=master)
    headers = tokens.professional()

    def post() -> Any:
        return client.post("/fhir/DocumentReference", json=body, headers=headers)

    responses = _together(post, post)

    statuses = sorted(response.status_code for response in responses)
    assert statuses in ([200, 201], [201, 409]), [r.text for r in responses]
    if statuses == [200, 201]:
        assert responses[0].json()["id"] == responses[1].json()["id"]
    assert _documents_with(services, master) == 1


def test_two_different_submissions_at_once_store_one_and_refuse_the_other(client, tokens, services):
    patient_id, _ = create_patient(client, tokens)
    master = f"urn:uuid:{uuid.uuid4()}"
    subject = {"reference": f"Patient/{patient_id}"}
    headers = tokens.professional()

    def post(content: bytes) -> Callable[[], Any]:
        body = document_reference(subject, content, master=master)
        return lambda: client.post("/fhir/DocumentReference", json=body, headers=headers)

    responses = _together(post(b"one"), post(b"two"))

    assert sorted(response.status_code for response in responses) == [201, 409]
    assert _documents_with(services, master) == 1


@pytest.mark.postgres_only("waits on a row lock seen in pg_stat_activity")
def test_losing_the_race_for_a_master_identifier_at_commit_answers_409(client, tokens, services):
    """Another transaction holds the masterIdentifier but has not committed: the request
    sees no duplicate, blocks on the unique index, and fails once the other commits."""
    patient_id, _ = create_patient(client, tokens)
    master = f"urn:uuid:{uuid.uuid4()}"
    body = document_reference({"reference": f"Patient/{patient_id}"}, b"report", master=master)
    rival = services.session_factory()
    rival.add(
        Document(
            patient_id=patient_id,
            master_identifier=master,
            status="current",
            # The same sender as the request: only their own identifiers can collide.
            author_kind="professional",
            author_id=DOCTOR,
            content_fingerprint=b"\0" * 32,
        )
    )
    rival.flush()
    result: dict[str, Any] = {}
    request = threading.Thread(
        target=lambda: result.update(
            response=client.post(
                "/fhir/DocumentReference", json=body, headers=tokens.professional()
            )
        )
    )
    request.start()
    try:
        _wait_for_a_lock_wait(services)
    finally:
        rival.commit()
        rival.close()
    request.join()

    response = result["response"]
    assert response.status_code == 409, response.text
    assert response.json()["issue"][0]["code"] == "conflict"
    assert _documents_with(services, master) == 1


def _wait_for_a_lock_wait(services) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    with services.engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            connection.rollback()
            if waiting:
                return
            time.sleep(0.01)
    raise AssertionError("the request never waited on the rival transaction")


def test_a_patient_retrying_an_upload_gets_the_same_document(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.patient(ins_value), patient_id, b"my advance directives")
    body = document_reference(
        {"reference": f"Patient/{patient_id}"},
        b"my advance directives",
        master=stored["masterIdentifier"]["value"],
    )

    again = client.post("/fhir/DocumentReference", json=body, headers=tokens.patient(ins_value))

    assert again.status_code == 200, again.text
    assert again.json()["id"] == stored["id"]
