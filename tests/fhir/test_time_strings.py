"""Dates, dateTimes, instants and times are strings in FHIR JSON. The models would read a
JSON number there as a Unix time, a date nobody wrote: it is refused, wherever it is."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.factories import create_patient, document_reference, ins, patient_resource
from vault.errors import InvalidResource
from vault.fhir.validate import validate_resource
from vault.models import Document, Patient


def _period_start(value: Any) -> dict[str, Any]:
    resource = document_reference({"reference": "Patient/x"})
    resource["context"] = {"period": {"start": value}}
    return resource


def _creation(value: Any) -> dict[str, Any]:
    resource = document_reference({"reference": "Patient/x"})
    resource["content"][0]["attachment"]["creation"] = value
    return resource


def _birth_date_in_a_bundle(value: Any) -> dict[str, Any]:
    patient = {**patient_resource(ins(1)), "birthDate": value}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": patient, "request": {"method": "POST", "url": "Patient"}}],
    }


@pytest.mark.parametrize(
    ("build", "expression"),
    [
        (_period_start, "DocumentReference.context.period.start"),
        (_creation, "DocumentReference.content[0].attachment.creation"),
        (_birth_date_in_a_bundle, "Bundle.entry[0].resource.birthDate"),
    ],
)
def test_a_number_where_a_time_belongs_is_refused_where_it_is(build, expression):
    with pytest.raises(InvalidResource) as refused:
        validate_resource(build(0))
    assert refused.value.expression == expression
    # The same element written as FHIR writes it passes.
    validate_resource(
        build("2026-11-20T10:00:00+01:00" if "birthDate" not in expression else "1985-07-14")
    )


@given(
    st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
)
def test_no_json_number_is_read_as_a_period_start(value):
    with pytest.raises(InvalidResource):
        validate_resource(_period_start(value))


def test_a_record_with_a_numeric_birth_date_is_refused_and_not_created(client, tokens, services):
    ins_value = ins(7)
    response = client.post(
        "/fhir/Patient",
        json={**patient_resource(ins_value), "birthDate": 0},
        headers=tokens.patient(ins_value),
    )
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Patient.birthDate"]
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Patient)) == 0


def test_a_document_with_a_numeric_period_is_refused_and_not_stored(client, tokens, services):
    patient_id, _ = create_patient(client, tokens)
    resource = document_reference({"reference": f"Patient/{patient_id}"})
    resource["context"] = {"period": {"start": 1700000000}}
    response = client.post("/fhir/DocumentReference", json=resource, headers=tokens.professional())
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == ["DocumentReference.context.period.start"]
    with services.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 0
