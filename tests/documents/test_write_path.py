"""The document write path's shortcuts (docs/performance.md) store what the ORM stored: a
submission's rows go in a few statements, and a patient's key is cached per process only
once it is committed."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from tests.factories import create_patient, document_reference, provide_bundle, publish
from tests.fhir.support import assert_refused, response_entries, snapshot


def _plain(headers: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key != "Content-Type"}


def test_a_submission_of_more_documents_than_one_statement_takes_stores_each(
    client, tokens, services
) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    contents = [f"document {n}".encode() for n in range(12)]
    bundle = provide_bundle(
        {"reference": f"Patient/{patient_id}"}, [(content, "text/plain") for content in contents]
    )
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert response.status_code == 200, response.text
    entries = response_entries(response)
    assert [entry["status"] for entry in entries[1:]] == ["201 Created"] * 24

    reader = _plain(tokens.patient(ins_value))
    for n, content in enumerate(contents):
        binary = entries[2 + 2 * n]["location"]
        assert client.get(f"/fhir/{binary}", headers=reader).content == content
        document = entries[1 + 2 * n]["location"].split("/_history")[0]
        stored = client.get(f"/fhir/{document}", headers=reader).json()
        assert stored["content"][0]["attachment"]["url"] == binary
        assert stored["meta"]["versionId"] == "1"
    listed = client.get(f"/fhir/{entries[0]['location']}", headers=reader).json()
    assert len(listed["entry"]) == 12
    with services.engine.connect() as connection:
        counts = connection.execute(
            text(
                "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM binaries), "
                "(SELECT count(*) FROM document_versions), "
                "(SELECT count(*) FROM submission_set_members)"
            )
        ).one()
    assert tuple(counts) == (12, 12, 12, 12)


def test_a_key_made_in_a_transaction_that_rolled_back_never_seals_a_document(
    client, tokens, services
) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    with services.engine.connect() as connection:
        committed = connection.execute(
            text("SELECT id FROM patient_keys WHERE patient_id = :patient"), {"patient": patient_id}
        ).scalar_one()
    with services.session_factory() as session:
        abandoned = services.keys.create_kek(session, patient_id)
        session.flush()
        # The newest key, as the lookup sees it inside that transaction.
        found = services.keys.find_active_kek(session, patient_id)
        assert found is not None
        assert found.id == abandoned.id
        session.rollback()

    stored = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 after the rollback")
    binary_id = stored["content"][0]["attachment"]["url"].split("/")[1]
    with services.engine.connect() as connection:
        used = connection.execute(
            text("SELECT kek_id FROM binaries WHERE id = :binary"), {"binary": binary_id}
        ).scalar_one()
    assert used == committed
    services.keys.forget()
    download = client.get(f"/fhir/Binary/{binary_id}", headers=_plain(tokens.patient(ins_value)))
    assert download.content == b"%PDF-1.7 after the rollback"


def test_a_subject_that_names_no_patient_is_refused_while_keys_are_cached(
    client, tokens, services
) -> None:
    patient_id, _ = create_patient(client, tokens)
    publish(client, tokens.professional(), patient_id, b"%PDF-1.7 first")
    before = snapshot(services)
    response = client.post(
        "/fhir/DocumentReference",
        json=document_reference({"reference": f"Patient/{uuid.uuid4()}"}),
        headers=tokens.professional(),
    )
    assert_refused(
        services, before, response, 422, says="does not exist", where="DocumentReference.subject"
    )
