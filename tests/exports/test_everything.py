"""``Patient/$everything``: the export's resources for a SMART patient app, paged across
the Patient and Consents, the DocumentReferences (by reference to their Binary) and the
AuditEvents; nobody else gets anything."""

from __future__ import annotations

from tests.exports.test_export import record  # noqa: F401 - the shared fixture
from tests.factories import DOCTOR, create_patient


def _walk(client, headers, url: str) -> tuple[list[dict], int]:
    resources, pages = [], 0
    while url:
        response = client.get(url.removeprefix("http://testserver"), headers=headers)
        assert response.status_code == 200, response.text
        bundle = response.json()
        assert bundle["type"] == "searchset"
        resources.extend(entry["resource"] for entry in bundle["entry"])
        pages += 1
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), "")
    return resources, pages


def test_everything_pages_through_the_whole_record(client, tokens, record):  # noqa: F811
    patient_id, ins_value, originals, hidden_id = record
    own = tokens.patient(ins_value)
    resources, pages = _walk(client, own, f"/fhir/Patient/{patient_id}/$everything?_count=2")
    kinds = [resource["resourceType"] for resource in resources]
    assert kinds[0] == "Patient"
    assert "Consent" in kinds
    documents = {r["id"]: r for r in resources if r["resourceType"] == "DocumentReference"}
    assert set(documents) == set(originals)
    assert hidden_id not in documents
    for document in documents.values():
        assert document["content"][0]["attachment"]["url"].startswith("Binary/")
        assert "data" not in document["content"][0]["attachment"]
    assert "AuditEvent" in kinds
    # Phases in order, each resource once.
    assert kinds.index("AuditEvent") > max(
        i for i, k in enumerate(kinds) if k == "DocumentReference"
    )
    assert len({(r["resourceType"], r["id"]) for r in resources}) == len(resources)
    assert pages > 3
    whole, one_page = _walk(client, own, f"/fhir/Patient/{patient_id}/$everything?_count=200")
    assert one_page == 1
    assert [r["id"] for r in whole if r["resourceType"] == "DocumentReference"] == [
        r["id"] for r in resources if r["resourceType"] == "DocumentReference"
    ]


def test_everything_is_the_patients_alone(client, tokens, record):  # noqa: F811
    patient_id, _, _, _ = record
    _, other_ins = create_patient(client, tokens, seed=73)
    for headers in (tokens.patient(other_ins), tokens.professional(DOCTOR), tokens.caregiver()):
        response = client.get(f"/fhir/Patient/{patient_id}/$everything", headers=headers)
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"
    bad = client.get(
        f"/fhir/Patient/{patient_id}/$everything?_cursor=x.y", headers=tokens.patient(record[1])
    )
    assert bad.status_code == 400


def test_the_capability_statement_lists_patient_everything(client):
    statement = client.get("/fhir/metadata").json()
    (patient,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "Patient"]
    assert [operation["name"] for operation in patient["operation"]] == ["everything"]
