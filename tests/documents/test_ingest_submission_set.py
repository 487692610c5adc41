"""The SubmissionSet of an ITI-65 submission: it must list every DocumentReference of the
submission; it is kept, encrypted, so that the ``List/{id}`` the response names can be
read back by whoever may read every document it lists."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from tests.factories import OTHER_DOCTOR, create_patient, provide_bundle
from tests.fhir.support import assert_refused, response_entries, snapshot

MARKER = "SUBMISSION-MARKER-7f3a9c"


def submit(client: Any, tokens: Any, patient_id: str, *documents: bytes, **kw: Any) -> Any:
    bundle = provide_bundle(
        {"reference": f"Patient/{patient_id}"}, [(content, "text/plain") for content in documents]
    )
    bundle["entry"][0]["resource"].update(kw)
    return client.post("/fhir", json=bundle, headers=tokens.professional())


def plain(headers: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key != "Content-Type"}


def test_the_list_location_reads_back_as_the_stored_submission_set(client, tokens) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    response = submit(client, tokens, patient_id, b"one", b"two", title=MARKER)
    entries = response_entries(response)

    kept = client.get(f"/fhir/{entries[0]['location']}", headers=plain(tokens.patient(ins_value)))
    assert kept.status_code == 200, kept.text
    submission_set = kept.json()
    assert submission_set["resourceType"] == "List"
    assert submission_set["id"] == entries[0]["location"].split("/")[1]
    assert submission_set["title"] == MARKER
    assert submission_set["subject"] == {"reference": f"Patient/{patient_id}"}
    listed = [entry["item"]["reference"] for entry in submission_set["entry"]]
    assert listed == [
        entries[1]["location"].split("/_history")[0],
        entries[3]["location"].split("/_history")[0],
    ]
    assert kept.headers["etag"] == 'W/"1"'
    # The author reads it too: they may read every document in it.
    assert (
        client.get(
            f"/fhir/{entries[0]['location']}", headers=plain(tokens.professional())
        ).status_code
        == 200
    )


def test_the_submission_set_is_stored_encrypted(client, tokens, services) -> None:
    patient_id, _ = create_patient(client, tokens)
    submit(client, tokens, patient_id, b"one", title=MARKER)
    with services.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM submission_sets")).all()
    assert len(rows) == 1
    assert all(
        MARKER.encode() not in bytes(value)
        for value in rows[0]
        if isinstance(value, bytes | memoryview)
    )
    assert MARKER not in repr(rows[0])


def test_who_may_not_read_its_documents_does_not_see_the_submission_set(client, tokens) -> None:
    patient_id, _ = create_patient(client, tokens, seed=1)
    _, other_ins = create_patient(client, tokens, seed=2)
    location = response_entries(submit(client, tokens, patient_id, b"one"))[0]["location"]
    for headers in (tokens.professional(OTHER_DOCTOR), tokens.patient(other_ins)):
        refused = client.get(f"/fhir/{location}", headers=plain(headers))
        assert refused.status_code == 404, refused.text
        assert refused.json()["issue"][0]["diagnostics"] == "List not found"
    unknown = client.get(f"/fhir/List/{uuid.uuid4()}", headers=plain(tokens.professional()))
    assert unknown.status_code == 404


def test_a_submission_set_with_a_document_hidden_from_the_patient_is_hidden_too(
    client, tokens
) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    bundle = provide_bundle(
        {"reference": f"Patient/{patient_id}"}, [(b"seen", "text/plain"), (b"unseen", "text/plain")]
    )
    bundle["entry"][3]["resource"]["securityLabel"] = [{"coding": [{"code": "INVISIBLE_PATIENT"}]}]
    location = response_entries(client.post("/fhir", json=bundle, headers=tokens.professional()))[
        0
    ]["location"]
    assert (
        client.get(f"/fhir/{location}", headers=plain(tokens.patient(ins_value))).status_code == 404
    )
    assert client.get(f"/fhir/{location}", headers=plain(tokens.professional())).status_code == 200


def test_a_retried_submission_returns_the_submission_set_stored_first(
    client, tokens, services
) -> None:
    patient_id, _ = create_patient(client, tokens)
    bundle = provide_bundle({"reference": f"Patient/{patient_id}"}, [(b"one", "text/plain")])
    first = response_entries(client.post("/fhir", json=bundle, headers=tokens.professional()))
    again = response_entries(client.post("/fhir", json=bundle, headers=tokens.professional()))
    assert again[0] == {**first[0], "status": "200 OK"}
    assert snapshot(services)["submission_sets"] == 1


def test_a_unique_id_reused_for_other_documents_is_a_conflict(client, tokens, services) -> None:
    patient_id, _ = create_patient(client, tokens)
    unique = [
        {"use": "official", "system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"}
    ]
    assert submit(client, tokens, patient_id, b"one", identifier=unique).status_code == 200
    before = snapshot(services)
    response = submit(client, tokens, patient_id, b"two", identifier=unique)
    assert_refused(services, before, response, 409, says="uniqueId")


def test_a_submission_set_that_omits_a_document_is_unprocessable(client, tokens, services) -> None:
    patient_id, _ = create_patient(client, tokens)
    bundle = provide_bundle(
        {"reference": f"Patient/{patient_id}"}, [(b"one", "text/plain"), (b"two", "text/plain")]
    )
    bundle["entry"][0]["resource"]["entry"].pop()
    before = snapshot(services)
    response = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert_refused(
        services, before, response, 422, says="every DocumentReference", where="Bundle.entry[3]"
    )


def test_a_submission_set_listing_what_is_not_a_document_of_the_submission_is_unprocessable(
    client, tokens, services
) -> None:
    patient_id, _ = create_patient(client, tokens)
    stored = response_entries(submit(client, tokens, patient_id, b"earlier"))[1]["location"]
    for item in ("binary", f"{stored.split('/_history')[0]}", "urn:uuid:nowhere"):
        bundle = provide_bundle({"reference": f"Patient/{patient_id}"}, [(b"one", "text/plain")])
        reference = bundle["entry"][2]["fullUrl"] if item == "binary" else item
        bundle["entry"][0]["resource"]["entry"].append({"item": {"reference": reference}})
        before = snapshot(services)
        response = client.post("/fhir", json=bundle, headers=tokens.professional())
        assert_refused(
            services,
            before,
            response,
            422,
            says="DocumentReferences of this submission",
            where="Bundle.entry[0].resource.entry[1].item",
        )
