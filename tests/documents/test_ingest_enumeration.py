"""A patient must not learn, by uploading, whether someone else's record exists."""

from __future__ import annotations

import pytest

from tests.factories import document_reference, ins, patient_resource

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"


@pytest.mark.parametrize("form", ["conditional", "identifier", "literal"])
def test_patient_upload_to_an_unknown_or_foreign_record_answers_the_same(client, tokens, form):
    mine, theirs, nobody = ins(61), ins(62), ins(63)
    assert (
        client.post(
            "/fhir/Patient", json=patient_resource(mine), headers=tokens.patient(mine)
        ).status_code
        == 201
    )
    created = client.post(
        "/fhir/Patient", json=patient_resource(theirs), headers=tokens.patient(theirs)
    )
    their_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]

    def subject(ins_value: str, record_id: str) -> dict:
        if form == "conditional":
            return {"reference": f"Patient?identifier={INS_SYSTEM}|{ins_value}"}
        if form == "identifier":
            return {"identifier": {"system": INS_SYSTEM, "value": ins_value}}
        return {"reference": f"Patient/{record_id}"}

    answers = []
    for ins_value, record_id in (
        (theirs, their_id),
        (nobody, "00000000-0000-4000-8000-000000000000"),
    ):
        response = client.post(
            "/fhir/DocumentReference",
            json=document_reference(subject(ins_value, record_id)),
            headers=tokens.patient(mine),
        )
        answers.append(
            (
                response.status_code,
                response.json()["issue"][0]["code"],
                response.json()["issue"][0]["diagnostics"],
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][0] == 404
