"""Metadata updates over HTTP: FHIRPath Patch and JSON Patch on status and securityLabel,
each a new version; old versions stay readable; If-Match guards against lost updates."""

from __future__ import annotations

import json
from typing import Any

from tests.factories import OTHER_DOCTOR, create_patient, publish

JSON_PATCH = "application/json-patch+json"


def _patch(client, headers, document_id: str, body: Any, *, kind: str = "", **extra: str):
    content_type = kind or headers["Content-Type"]
    return client.patch(
        f"/fhir/DocumentReference/{document_id}",
        content=json.dumps(body),
        headers={**headers, "Content-Type": content_type, **extra},
    )


def _operation(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    part = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    part += [{"name": name, **value} for name, value in parts.items()]
    return {"name": "operation", "part": part}


def _parameters(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


def test_the_mhd_patch_parameters_supersede_a_document_as_version_2(client, tokens, corpus):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)
    body = json.loads((corpus / "ihe-mhd" / "Parameters-ex-patchParameters.json").read_text())

    response = _patch(client, tokens.professional(), stored["id"], body)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "superseded"
    assert response.json()["meta"]["versionId"] == "2"
    assert response.headers["ETag"] == 'W/"2"'
    assert response.headers["Last-Modified"].endswith("GMT")
    current = client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value)
    )
    assert current.json()["status"] == "superseded"


def test_json_patch_adds_a_security_label_and_search_sees_it(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)
    label = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
        ]
    }

    response = _patch(
        client,
        tokens.professional(),
        stored["id"],
        [{"op": "add", "path": "/securityLabel/-", "value": label}],
        kind=JSON_PATCH,
    )

    assert response.status_code == 200, response.text
    assert response.json()["securityLabel"] == [label]
    found = client.get(
        f"/fhir/DocumentReference?patient={patient_id}&security-label=R",
        headers=tokens.patient(ins_value),
    )
    assert [entry["resource"]["id"] for entry in found.json()["entry"]] == [stored["id"]]


def test_fhirpath_patch_removes_a_security_label_by_its_code(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id, labels=("N", "R"))

    response = _patch(
        client,
        tokens.professional(),
        stored["id"],
        _parameters(_operation("delete", "DocumentReference.securityLabel.where(coding.code='R')")),
    )

    assert response.status_code == 200, response.text
    assert response.json()["securityLabel"] == [{"coding": [{"code": "N"}]}]
    found = client.get(
        f"/fhir/DocumentReference?patient={patient_id}&security-label=R",
        headers=tokens.patient(ins_value),
    )
    assert found.json()["entry"] == []


def test_every_version_stays_readable_to_whoever_may_read_the_document(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)
    _patch(
        client,
        tokens.professional(),
        stored["id"],
        [{"op": "add", "path": "/securityLabel", "value": [{"coding": [{"code": "N"}]}]}],
        kind=JSON_PATCH,
    )
    _patch(
        client,
        tokens.professional(),
        stored["id"],
        [{"op": "replace", "path": "/status", "value": "entered-in-error"}],
        kind=JSON_PATCH,
    )

    for headers in (tokens.patient(ins_value), tokens.professional()):
        first = client.get(f"/fhir/DocumentReference/{stored['id']}/_history/1", headers=headers)
        assert first.status_code == 200
        assert first.json()["status"] == "current"
        assert "securityLabel" not in first.json()
        assert first.headers["ETag"] == 'W/"1"'
        history = client.get(f"/fhir/DocumentReference/{stored['id']}/_history", headers=headers)
        assert history.status_code == 200
        bundle = history.json()
        assert bundle["type"] == "history"
        assert [entry["resource"]["meta"]["versionId"] for entry in bundle["entry"]] == [
            "3",
            "2",
            "1",
        ]
        assert [entry["request"]["method"] for entry in bundle["entry"]] == [
            "PATCH",
            "PATCH",
            "POST",
        ]
        assert bundle["entry"][0]["response"]["etag"] == 'W/"3"'
    missing = client.get(
        f"/fhir/DocumentReference/{stored['id']}/_history/4", headers=tokens.patient(ins_value)
    )
    assert missing.status_code == 404


def test_if_match_with_a_stale_version_answers_412_and_changes_nothing(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)
    change = [{"op": "add", "path": "/securityLabel/-", "value": {"coding": [{"code": "N"}]}}]
    first = _patch(
        client,
        tokens.professional(),
        stored["id"],
        change,
        kind=JSON_PATCH,
        **{"If-Match": 'W/"1"'},
    )
    assert first.status_code == 200, first.text

    stale = _patch(
        client,
        tokens.professional(),
        stored["id"],
        change,
        kind=JSON_PATCH,
        **{"If-Match": 'W/"1"'},
    )

    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    current = client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value)
    )
    assert current.json()["meta"]["versionId"] == "2"
    assert len(current.json()["securityLabel"]) == 1


def test_if_match_with_the_current_version_lets_the_change_through(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)

    response = _patch(
        client,
        tokens.professional(),
        stored["id"],
        [{"op": "replace", "path": "/status", "value": "entered-in-error"}],
        kind=JSON_PATCH,
        **{"If-Match": '"1"'},
    )

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "entered-in-error"


def test_only_status_and_security_label_can_be_patched(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)

    for body, kind in (
        ([{"op": "replace", "path": "/description", "value": "x"}], JSON_PATCH),
        ([{"op": "replace", "path": "/subject/reference", "value": "Patient/x"}], JSON_PATCH),
        (
            _parameters(
                _operation("replace", "DocumentReference.type", value={"valueString": "x"})
            ),
            "",
        ),
    ):
        response = _patch(client, tokens.professional(), stored["id"], body, kind=kind)
        assert response.status_code == 422, response.text
        assert response.json()["resourceType"] == "OperationOutcome"

    current = client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value)
    )
    assert current.json()["meta"]["versionId"] == "1"


def test_an_invalid_status_or_label_is_refused_without_a_new_version(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)

    bad_status = _patch(
        client,
        tokens.professional(),
        stored["id"],
        [{"op": "replace", "path": "/status", "value": "archived"}],
        kind=JSON_PATCH,
    )
    bad_label = _patch(
        client,
        tokens.professional(),
        stored["id"],
        [{"op": "add", "path": "/securityLabel/-", "value": {"coding": [{"code": 7}]}}],
        kind=JSON_PATCH,
    )

    assert bad_status.status_code == 422
    assert bad_label.status_code == 422
    current = client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value)
    )
    assert current.json()["meta"]["versionId"] == "1"


def test_a_superseded_document_does_not_become_current_again(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)
    to = [{"op": "replace", "path": "/status", "value": "superseded"}]
    assert (
        _patch(client, tokens.professional(), stored["id"], to, kind=JSON_PATCH).status_code == 200
    )

    back = _patch(
        client,
        tokens.professional(),
        stored["id"],
        [{"op": "replace", "path": "/status", "value": "current"}],
        kind=JSON_PATCH,
    )

    assert back.status_code == 409


def test_a_failing_json_patch_test_changes_nothing(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)

    response = _patch(
        client,
        tokens.professional(),
        stored["id"],
        [
            {"op": "test", "path": "/status", "value": "superseded"},
            {"op": "replace", "path": "/status", "value": "entered-in-error"},
        ],
        kind=JSON_PATCH,
    )

    assert response.status_code == 409
    current = client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value)
    )
    assert current.json()["status"] == "current"


def test_a_patch_that_changes_nothing_makes_no_version(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)

    response = _patch(
        client,
        tokens.professional(),
        stored["id"],
        [{"op": "replace", "path": "/status", "value": "current"}],
        kind=JSON_PATCH,
    )

    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "1"


def test_a_professional_who_did_not_author_the_document_cannot_patch_it(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)
    change = [{"op": "replace", "path": "/status", "value": "entered-in-error"}]

    refused = _patch(
        client, tokens.professional(OTHER_DOCTOR), stored["id"], change, kind=JSON_PATCH
    )
    absent = _patch(
        client, tokens.professional(OTHER_DOCTOR), "no-such-id", change, kind=JSON_PATCH
    )

    assert refused.status_code == 404
    assert refused.json() == absent.json()
    current = client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value)
    )
    assert current.json()["status"] == "current"


def test_a_patient_cannot_patch_a_professionals_document(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)

    response = _patch(
        client,
        tokens.patient(ins_value),
        stored["id"],
        [{"op": "replace", "path": "/status", "value": "entered-in-error"}],
        kind=JSON_PATCH,
    )

    assert response.status_code in (403, 404)
    current = client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value)
    )
    assert current.json()["status"] == "current"


def test_a_patient_labels_a_document_they_uploaded(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.patient(ins_value), patient_id, b"old results")

    response = _patch(
        client,
        tokens.patient(ins_value),
        stored["id"],
        _parameters(
            _operation(
                "add",
                "DocumentReference",
                name={"valueString": "securityLabel"},
                value={"valueCoding": {"code": "R"}},
            )
        ),
    )

    assert response.status_code == 200, response.text
    assert response.json()["securityLabel"] == [{"coding": [{"code": "R"}]}]


def test_another_patients_document_history_and_versions_are_invisible(client, tokens):
    patient_id, _ = create_patient(client, tokens, seed=1)
    _, other_ins = create_patient(client, tokens, seed=2)
    stored = publish(client, tokens.professional(), patient_id)
    intruder = tokens.patient(other_ins)

    for path in ("", "/_history", "/_history/1"):
        seen = client.get(f"/fhir/DocumentReference/{stored['id']}{path}", headers=intruder)
        absent = client.get(f"/fhir/DocumentReference/no-such-id{path}", headers=intruder)
        assert seen.status_code == 404, path
        assert seen.json() == absent.json()
    patched = _patch(
        client,
        intruder,
        stored["id"],
        [{"op": "replace", "path": "/status", "value": "entered-in-error"}],
        kind=JSON_PATCH,
    )
    assert patched.status_code == 404


def test_a_malformed_if_match_answers_412(client, tokens):
    patient_id, _ = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id)

    response = _patch(
        client,
        tokens.professional(),
        stored["id"],
        [{"op": "replace", "path": "/status", "value": "superseded"}],
        kind=JSON_PATCH,
        **{"If-Match": "yesterday"},
    )

    assert response.status_code == 412
