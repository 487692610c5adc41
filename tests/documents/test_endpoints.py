from __future__ import annotations

import base64

from tests.factories import DOCTOR, document_reference, ins, patient_resource, provide_bundle


def create_patient(client, tokens, seed: int = 1) -> tuple[str, str]:
    ins_value = ins(seed)
    response = client.post(
        "/fhir/Patient", json=patient_resource(ins_value), headers=tokens.patient(ins_value)
    )
    assert response.status_code == 201, response.text
    return response.headers["Location"].split("/Patient/")[1].split("/")[0], ins_value


def test_professional_publishes_and_patient_reads_back_byte_identical(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    content = b"%PDF-1.7 resultats de biologie"
    published = client.post(
        "/fhir/DocumentReference",
        json=document_reference({"reference": f"Patient/{patient_id}"}, content),
        headers=tokens.professional(),
    )
    assert published.status_code == 201, published.text
    stored = published.json()
    binary_id = stored["content"][0]["attachment"]["url"].split("/")[-1]

    read = client.get(f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value))
    assert read.status_code == 200, read.text
    assert read.json()["subject"]["reference"] == f"Patient/{patient_id}"

    download = client.get(f"/fhir/Binary/{binary_id}", headers=tokens.patient(ins_value))
    assert download.status_code == 200
    assert download.content == content
    assert download.headers["content-type"] == "application/pdf"


def test_provide_bundle_stores_every_document_of_the_submission(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    bundle = provide_bundle(
        {"reference": f"Patient/{patient_id}"},
        [(b"first", "text/plain"), (b"second", "text/plain")],
    )
    response = client.post("/fhir", json=bundle, headers=tokens.software(on_behalf_of=DOCTOR))
    assert response.status_code == 200, response.text
    statuses = [entry["response"]["status"] for entry in response.json()["entry"]]
    assert statuses == ["201 Created"] * 5

    found = client.get(
        f"/fhir/DocumentReference?patient={patient_id}", headers=tokens.patient(ins_value)
    )
    assert found.status_code == 200
    contents = set()
    for entry in found.json()["entry"]:
        url = entry["resource"]["content"][0]["attachment"]["url"]
        contents.add(client.get(f"/fhir/{url}", headers=tokens.patient(ins_value)).content)
    assert contents == {b"first", b"second"}


def test_binary_as_fhir_json_carries_base64_data(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = client.post(
        "/fhir/DocumentReference",
        json=document_reference(
            {"reference": f"Patient/{patient_id}"}, b"hello", content_type="text/plain"
        ),
        headers=tokens.professional(),
    ).json()
    url = stored["content"][0]["attachment"]["url"]
    response = client.get(
        f"/fhir/{url}", headers={**tokens.patient(ins_value), "Accept": "application/fhir+json"}
    )
    assert response.json()["resourceType"] == "Binary"
    assert base64.b64decode(response.json()["data"]) == b"hello"
