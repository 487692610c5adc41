"""The two patch syntaxes, parsed into one set of operations and applied in order."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.documents.patch import changes_for, parse_fhirpath_patch, parse_json_patch
from vault.errors import BadRequest, Conflict, InvalidResource

codes = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=4)
label = codes.map(lambda code: {"coding": [{"code": code}]})
labels = st.lists(label, max_size=6)


def _operation(kind: str, path: str, **parts: object) -> dict[str, object]:
    part = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    part += [{"name": name, **value} for name, value in parts.items()]  # type: ignore[dict-item]
    return {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": part}]}


def test_the_mhd_example_parses_into_a_status_replacement(corpus):
    body = json.loads((corpus / "ihe-mhd" / "Parameters-ex-patchParameters.json").read_text())

    operations = parse_fhirpath_patch(body)

    assert changes_for({"status": "current"}, operations) == {"status": "superseded"}


def test_fhirpath_insert_places_a_label_at_its_index():
    operations = parse_fhirpath_patch(
        _operation(
            "insert",
            "DocumentReference.securityLabel",
            index={"valueInteger": 0},
            value={"valueCodeableConcept": {"coding": [{"code": "R"}]}},
        )
    )

    changes = changes_for({"securityLabel": [{"coding": [{"code": "N"}]}]}, operations)

    assert changes == {"securityLabel": [{"coding": [{"code": "R"}]}, {"coding": [{"code": "N"}]}]}


def test_fhirpath_replace_by_code_needs_exactly_one_match():
    operations = parse_fhirpath_patch(
        _operation(
            "replace",
            "DocumentReference.securityLabel.where(coding.code='N')",
            value={"valueCoding": {"code": "R"}},
        )
    )

    assert changes_for({"securityLabel": [{"coding": [{"code": "N"}]}]}, operations) == {
        "securityLabel": [{"coding": [{"code": "R"}]}]
    }
    with pytest.raises(InvalidResource):
        changes_for({"securityLabel": []}, operations)


@pytest.mark.parametrize(
    "path",
    [
        "DocumentReference.subject",
        "DocumentReference.content[0].attachment.url",
        "DocumentReference.status[0]",
        "DocumentReference.securityLabel.first()",
    ],
)
def test_fhirpath_paths_outside_status_and_security_label_are_refused(path):
    with pytest.raises(InvalidResource):
        parse_fhirpath_patch(_operation("replace", path, value={"valueString": "x"}))


def test_fhirpath_move_is_not_supported():
    with pytest.raises(InvalidResource):
        parse_fhirpath_patch(_operation("move", "DocumentReference.securityLabel"))


def test_a_json_patch_must_be_an_array_and_a_fhirpath_patch_a_parameters():
    with pytest.raises(BadRequest):
        parse_json_patch({"op": "replace"})
    with pytest.raises(BadRequest):
        parse_fhirpath_patch({"resourceType": "Bundle"})


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "copy", "from": "/status", "path": "/status"},
        {"op": "replace", "path": "/status"},
        {"op": "replace", "path": "/securityLabel/01", "value": {}},
        {"op": "replace", "path": "/securityLabel/-", "value": {}},
        {"op": "replace", "path": "/securityLabel", "value": {"coding": [{"code": "N"}]}},
        {"op": "replace", "path": "/status/0", "value": "current"},
        {"op": "replace", "path": "status", "value": "current"},
    ],
)
def test_malformed_json_patch_operations_are_refused(operation):
    with pytest.raises(InvalidResource):
        parse_json_patch([operation])


def test_a_json_patch_of_tests_alone_changes_nothing_and_is_refused():
    with pytest.raises(InvalidResource):
        parse_json_patch([{"op": "test", "path": "/status", "value": "current"}])


def test_a_failed_test_raises_a_conflict():
    operations = parse_json_patch(
        [
            {"op": "test", "path": "/securityLabel/0", "value": {"coding": [{"code": "N"}]}},
            {"op": "remove", "path": "/securityLabel/0"},
        ]
    )

    with pytest.raises(Conflict):
        changes_for({"securityLabel": [{"coding": [{"code": "R"}]}]}, operations)


def test_operations_apply_in_order():
    operations = parse_json_patch(
        [
            {"op": "replace", "path": "/status", "value": "superseded"},
            {"op": "test", "path": "/status", "value": "superseded"},
            {"op": "add", "path": "/securityLabel/-", "value": {"coding": [{"code": "N"}]}},
            {"op": "remove", "path": "/securityLabel/0"},
        ]
    )

    assert changes_for({"status": "current"}, operations) == {
        "status": "superseded",
        "securityLabel": None,
    }


@given(st.lists(label, min_size=1, max_size=6), st.data())
def test_removing_a_label_then_adding_it_back_at_its_index_restores_the_list(current, data):
    index = data.draw(st.integers(min_value=0, max_value=len(current) - 1))
    operations = parse_json_patch(
        [
            {"op": "remove", "path": f"/securityLabel/{index}"},
            {"op": "add", "path": f"/securityLabel/{index}", "value": current[index]},
        ]
    )

    assert changes_for({"securityLabel": current}, operations) == {"securityLabel": current}


@given(labels, codes)
def test_deleting_by_code_leaves_exactly_the_labels_without_that_code(current, code):
    operations = parse_fhirpath_patch(
        _operation("delete", f"DocumentReference.securityLabel.where(coding.code='{code}')")
    )

    result = changes_for({"securityLabel": current}, operations)["securityLabel"] or []

    assert result == [label for label in current if label["coding"][0]["code"] != code]


@given(labels, st.integers(min_value=0, max_value=10))
def test_an_index_past_the_end_is_refused_and_never_truncates(current, index):
    operations = parse_json_patch([{"op": "remove", "path": f"/securityLabel/{index}"}])

    if index < len(current):
        assert len(changes_for({"securityLabel": current}, operations)["securityLabel"] or []) == (
            len(current) - 1
        )
    else:
        with pytest.raises(InvalidResource):
            changes_for({"securityLabel": current}, operations)
