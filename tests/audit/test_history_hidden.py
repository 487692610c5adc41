"""Nothing hidden from the patient appears in their history (issue 12, item 8): not the
reads of a hidden document, nor of its content (Binary), its versions, or the SubmissionSet
(List) it came in; and nothing about it is notified. Once the author lifts the mark, its
trail appears."""

from __future__ import annotations

from tests.factories import DOCTOR, create_patient, provide_bundle
from vault.audit.delivery import DeliveryWorker, LogSender

VISIBILITY = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/"
    "TRE-A07-StatusVisibiliteDocument"
)


def _submit_hidden(client, author, patient_id: str) -> dict[str, str]:
    bundle = provide_bundle({"reference": f"Patient/{patient_id}"}, [(b"result", "text/plain")])
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "DocumentReference":
            entry["resource"]["securityLabel"] = [
                {"coding": [{"system": VISIBILITY, "code": "INVISIBLE_PATIENT"}]}
            ]
    response = client.post("/fhir", json=bundle, headers=author)
    assert response.status_code == 200, response.text
    where = {
        location.split("/")[0]: location.split("/")[1]
        for location in (entry["response"]["location"] for entry in response.json()["entry"])
    }
    read = client.get(f"/fhir/DocumentReference/{where['DocumentReference']}", headers=author)
    binary = read.json()["content"][0]["attachment"]["url"].rpartition("/")[2]
    return {**where, "Binary": binary}


def _references(client, headers, patient_id: str) -> set[str]:
    events = client.get(f"/fhir/AuditEvent?patient={patient_id}&_count=200", headers=headers)
    assert events.status_code == 200, events.text
    return {
        entity.get("what", {}).get("reference")
        for entry in events.json().get("entry", [])
        for entity in entry["resource"]["entity"]
    }


def test_no_trace_of_a_hidden_submission_reaches_the_patients_history(client, tokens, services):
    patient_id, ins_value = create_patient(client, tokens, 1)
    author = tokens.professional(DOCTOR)
    hidden = _submit_hidden(client, author, patient_id)
    document_id = hidden["DocumentReference"]
    for url in (
        f"/fhir/List/{hidden['List']}",
        f"/fhir/Binary/{hidden['Binary']}",
        f"/fhir/DocumentReference/{document_id}/_history",
        f"/fhir/DocumentReference/{document_id}/_history/1",
        f"/fhir/DocumentReference?patient={patient_id}",
    ):
        assert client.get(url, headers=author).status_code == 200, url
    # The patient asking for it leaves a refusal, which names the hidden document too.
    patient = tokens.patient(ins_value)
    assert client.get(f"/fhir/List/{hidden['List']}", headers=patient).status_code == 404

    references = _references(client, patient, patient_id)
    for kind in ("List", "Binary", "DocumentReference"):
        assert f"{kind}/{hidden[kind]}" not in references, kind
    # Nor is the patient told that someone read their record, when all they read is hidden.
    sent = DeliveryWorker(services.session_factory, LogSender()).run_once()
    assert sent.delivered == 0
    assert sent.held >= 1

    # The author announces the result: its trail is the patient's to see.
    lifted = client.patch(
        f"/fhir/DocumentReference/{document_id}",
        json=[{"op": "remove", "path": "/securityLabel/0"}],
        headers={**author, "Content-Type": "application/json-patch+json"},
    )
    assert lifted.status_code == 200, lifted.text
    references = _references(client, patient, patient_id)
    assert f"List/{hidden['List']}" in references
    assert f"Binary/{hidden['Binary']}" in references
