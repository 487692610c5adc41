from __future__ import annotations

import base64

from tests.factories import ins, patient_resource

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"


def test_patient_page_is_served_without_a_token_and_locked_down(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    # The sign-in page of the patient's space (tests/web): no token ever reaches it.
    assert 'href="/login"' in response.text or "demo-sign-in-patient" in response.text


def test_upload_as_the_page_sends_it_is_stored_as_the_patients_own_document(client, tokens):
    """The page names the patient by INS (a logical reference) and lets the vault set the
    author; this is the request it builds."""
    ins_value = ins(41)
    headers = tokens.patient(ins_value)
    assert (
        client.post("/fhir/Patient", json=patient_resource(ins_value), headers=headers).status_code
        == 201
    )
    upload = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "75320-2"}]},
        "category": [
            {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument",
                        "code": "10",
                    }
                ]
            }
        ],
        "subject": {"identifier": {"system": INS_SYSTEM, "value": ins_value}},
        "date": "2026-11-24T08:00:00Z",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "title": "Directives anticipées",
                    "data": base64.b64encode(b"je refuse").decode(),
                }
            }
        ],
    }
    stored = client.post("/fhir/DocumentReference", json=upload, headers=headers)
    assert stored.status_code == 201, stored.text
    document = stored.json()
    assert document["author"][0]["reference"].startswith("Patient/")

    listing = client.get("/fhir/DocumentReference?_count=100", headers=headers).json()
    urls = [entry["resource"]["content"][0]["attachment"]["url"] for entry in listing["entry"]]
    assert [client.get(f"/fhir/{url}", headers=headers).content for url in urls] == [b"je refuse"]
