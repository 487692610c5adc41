"""ITI-67 Find Document References: each search parameter, and what may not be seen."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import (
    DOCTOR,
    INS_SYSTEM,
    OTHER_DOCTOR,
    create_patient,
    document_reference,
    ins,
)

IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"


def _publish(client, headers, patient_id: str, **fields: Any) -> str:
    labels = fields.pop("labels", ())
    type_code = fields.pop("type_code", "11502-2")
    body = document_reference(
        {"reference": f"Patient/{patient_id}"}, labels=labels, type_code=type_code
    )
    body.update(fields)
    response = client.post("/fhir/DocumentReference", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _ids(client, headers, query: str) -> list[str]:
    response = client.get(f"/fhir/DocumentReference?{query}", headers=headers)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "searchset"
    return [entry["resource"]["id"] for entry in bundle["entry"]]


@pytest.fixture
def record(client, tokens) -> dict[str, Any]:
    """One patient with three documents from two professionals and one of their own."""
    patient_id, ins_value = create_patient(client, tokens)
    doctor, other = tokens.professional(), tokens.professional(OTHER_DOCTOR)
    old = _publish(client, doctor, patient_id, date="2024-01-15T10:00:00+01:00")
    middle = _publish(
        client,
        doctor,
        patient_id,
        date="2025-06-30T23:30:00+02:00",
        type_code="34133-9",
        labels=("R",),
    )
    recent = _publish(
        client,
        other,
        patient_id,
        date="2026-11-20T10:00:00+01:00",
        category=[{"coding": [{"system": "urn:example:classes", "code": "11"}]}],
    )
    own = _publish(client, tokens.patient(ins_value), patient_id, date="2023-03-01T08:00:00Z")
    return {
        "patient_id": patient_id,
        "ins": ins_value,
        "patient": tokens.patient(ins_value),
        "old": old,
        "middle": middle,
        "recent": recent,
        "own": own,
    }


def test_the_patient_finds_every_document_of_their_record_newest_first(client, record):
    found = _ids(client, record["patient"], f"patient={record['patient_id']}")

    assert found == [record["own"], record["recent"], record["middle"], record["old"]]


def test_a_patient_may_omit_the_patient_parameter(client, record):
    assert len(_ids(client, record["patient"], "")) == 4


def test_patient_identifier_finds_the_record_by_ins(client, record):
    found = _ids(client, record["patient"], f"patient.identifier={INS_SYSTEM}|{record['ins']}")

    assert len(found) == 4


def test_patient_as_an_absolute_or_relative_reference(client, record):
    for reference in (
        f"Patient/{record['patient_id']}",
        f"http://testserver/fhir/Patient/{record['patient_id']}",
    ):
        assert len(_ids(client, record["patient"], f"patient={reference}")) == 4


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("type=34133-9", ["middle"]),
        ("type=http://loinc.org|34133-9", ["middle"]),
        ("type=http://example.org|34133-9", []),
        ("type=34133-9,11502-2", ["own", "recent", "middle", "old"]),
        ("category=11", ["recent"]),
        ("category=urn:example:classes|11", ["recent"]),
        ("security-label=R", ["middle"]),
        ("security-label=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R", ["middle"]),
        ("status=current", ["own", "recent", "middle", "old"]),
        ("status=superseded", []),
    ],
)
def test_token_parameters_narrow_the_results(client, record, query, expected):
    found = _ids(client, record["patient"], f"patient={record['patient_id']}&{query}")

    assert found == [record[name] for name in expected]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("date=2025", ["middle"]),
        ("date=2025-06", ["middle"]),
        ("date=2024-01-15", ["old"]),
        ("date=2024-01-15T09:00:00Z", ["old"]),
        ("date=ge2025-01-01", ["recent", "middle"]),
        ("date=gt2025-06-30", ["recent"]),
        ("date=le2025-06-30", ["middle", "old", "own"]),
        ("date=lt2024-01-15", ["own"]),
        ("date=ge2024&date=lt2026", ["middle", "old"]),
    ],
)
def test_date_prefixes_select_by_instant_ranges(client, record, query, expected):
    found = _ids(client, record["patient"], f"patient={record['patient_id']}&{query}")

    assert sorted(found) == sorted(record[name] for name in expected)


@pytest.mark.parametrize(
    "query",
    [
        f"author={DOCTOR}",
        f"author=Practitioner/{DOCTOR}",
        f"author.identifier={IDNPS_SYSTEM}|{DOCTOR}",
        f"author.identifier={RPPS_SYSTEM}|{DOCTOR[1:]}",
    ],
)
def test_author_finds_a_professionals_documents_by_idnps_or_rpps(client, record, query):
    found = _ids(client, record["patient"], f"patient={record['patient_id']}&{query}")

    assert found == [record["middle"], record["old"]]


def test_author_finds_what_the_patient_uploaded(client, record):
    found = _ids(
        client,
        record["patient"],
        f"patient={record['patient_id']}&author=Patient/{record['patient_id']}",
    )

    assert found == [record["own"]]


def test_a_professional_sees_only_what_they_authored(client, tokens, record):
    doctor = _ids(client, tokens.professional(), f"patient={record['patient_id']}")
    other = _ids(client, tokens.professional(OTHER_DOCTOR), f"patient={record['patient_id']}")
    stranger = _ids(client, tokens.professional("810001111111"), f"patient={record['patient_id']}")

    assert doctor == [record["middle"], record["old"]]
    assert other == [record["recent"]]
    assert stranger == []


def test_software_sees_what_the_professional_it_acts_for_authored(client, tokens, record):
    found = _ids(client, tokens.software(on_behalf_of=DOCTOR), f"patient={record['patient_id']}")

    assert found == [record["middle"], record["old"]]


def test_searching_another_patients_record_finds_nothing(client, tokens, record):
    _, other_ins = create_patient(client, tokens, seed=2)
    intruder = tokens.patient(other_ins)

    by_id = client.get(f"/fhir/DocumentReference?patient={record['patient_id']}", headers=intruder)
    by_ins = client.get(
        f"/fhir/DocumentReference?patient.identifier={INS_SYSTEM}|{record['ins']}",
        headers=intruder,
    )
    unknown = client.get(
        f"/fhir/DocumentReference?patient.identifier={INS_SYSTEM}|{ins(99)}", headers=intruder
    )

    for response in (by_id, by_ins, unknown):
        assert response.status_code == 200
        assert response.json()["entry"] == []
        assert [link["relation"] for link in response.json()["link"]] == ["self"]


def test_the_bundle_has_no_exact_total_even_when_asked(client, record):
    response = client.get(
        f"/fhir/DocumentReference?patient={record['patient_id']}&_total=accurate",
        headers=record["patient"],
    )

    assert response.status_code == 200
    assert "total" not in response.json()
    assert len(response.json()["entry"]) == 4


def test_each_entry_is_a_match_with_its_full_url(client, record):
    response = client.get(
        f"/fhir/DocumentReference?patient={record['patient_id']}", headers=record["patient"]
    )

    for entry in response.json()["entry"]:
        assert entry["search"] == {"mode": "match"}
        assert (
            entry["fullUrl"]
            == f"http://testserver/fhir/DocumentReference/{entry['resource']['id']}"
        )


@pytest.mark.parametrize(
    "query",
    [
        "patient={p}&_sort=date",
        "patient={p}&date=ne2025",
        "patient={p}&date=2025-13",
        "patient={p}&date=yesterday",
        "patient={p}&status=current&status=superseded",
        "patient={p}&_count=ten",
        "patient={p}&_cursor=not-a-cursor",
        "patient.identifier=no-system",
        "patient={p}&patient.identifier=" + INS_SYSTEM + "|x",
    ],
)
def test_malformed_searches_answer_400_with_an_operation_outcome(client, record, query):
    response = client.get(
        "/fhir/DocumentReference?" + query.format(p=record["patient_id"]),
        headers=record["patient"],
    )

    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


def test_a_professional_must_name_the_patient(client, tokens, record):
    response = client.get("/fhir/DocumentReference", headers=tokens.professional())

    assert response.status_code == 400


def test_an_unknown_or_absurd_patient_finds_nothing(client, tokens, record):
    for patient in ("no-such-patient", "x" * 300):
        response = client.get(
            f"/fhir/DocumentReference?patient={patient}", headers=tokens.professional()
        )
        assert response.status_code == 200, response.text
        assert response.json()["entry"] == []
