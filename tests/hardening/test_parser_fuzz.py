"""Property-based fuzzing of the parsers that see a request before the database does: the
body parser, the ITI-65 and ITI-105 plan building, the patch parsers and the search
parameters. Whatever they are given, they return or raise a VaultError -- any other
exception would reach the client as a 500."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import document_reference, provide_bundle
from vault.api.fhir.audit_events import _count as audit_count
from vault.api.fhir.documents import _count, expected_version
from vault.api.fhir.params import apply_date, date_bounds, split_or
from vault.audit.history import parse_cursor
from vault.documents.metadata import extract
from vault.documents.patch import changes_for, parse_fhirpath_patch, parse_json_patch
from vault.documents.submission import Submission
from vault.errors import VaultError
from vault.fhir import base64binary
from vault.fhir.validate import validate_resource
from vault.fhir.wire import parse_json, parse_resource
from vault.submissions import ingest

BASE = "http://testserver/fhir/"
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# -- values ---------------------------------------------------------------------------------

tricky_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "\x00",
            "\u202e",
            "e\u0301",
            "\ufeff",
            "\u0661٢٣",
            "²",
            "\U0001d7d8",
            "Patient/x",
            "DocumentReference/1",
            "urn:uuid:00000000-0000-0000-0000-000000000000",
            "#p",
            "current",
            "superseded",
            "transaction",
            "POST",
            "PATCH",
            "eA==",
            "9999-12-31",
            "0001-01-01T00:00:00Z",
            "' OR '1'='1",
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    tricky_text,
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.one_of(st.text(max_size=6), tricky_text), children, max_size=3)
    ),
    max_leaves=12,
)


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, original: dict[str, Any], rounds: int = 3) -> dict[str, Any]:
    """A valid resource with a few of its nodes replaced by arbitrary JSON or removed."""
    document = copy.deepcopy(original)
    for _ in range(draw(st.integers(min_value=1, max_value=rounds))):
        paths = [path for path in _paths(document) if path]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return document


def only_vault_errors(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except VaultError:
        return None


# -- the body ------------------------------------------------------------------------------


@FUZZ
@given(json_values, st.sampled_from(["1" * 4400, "-" + "9" * 5000, "1e308", "1e309", '"x"']))
def test_any_json_body_parses_or_is_refused_with_a_vault_error(value: Any, extreme: str) -> None:
    body = f'{{"resourceType": "DocumentReference", "a": {json.dumps(value)}, "b": {extreme}}}'
    document = only_vault_errors(parse_resource, body.encode())
    # What is accepted must be sendable back as JSON (no infinities).
    if document is not None:
        json.dumps(document, allow_nan=False)


@FUZZ
@given(st.sampled_from(["1" * 5000, "1e99999", "-1e99999", "1" * 4301 + ".5", "0." + "1" * 5000]))
def test_numbers_beyond_what_python_reads_are_a_bad_request(number: str) -> None:
    body = f'{{"resourceType": "Patient", "n": {number}}}'.encode()
    document = only_vault_errors(parse_json, body)
    # What is accepted must be sendable back as JSON (no infinities).
    if document is not None:
        json.dumps(document, allow_nan=False)


# -- ITI-65 plan building ----------------------------------------------------------------


def plan(bundle: dict[str, Any]) -> None:
    """Everything provide_bundle checks before it touches the database, in its order."""
    submission = Submission.parse(bundle)
    validate_resource(bundle, expression="Bundle")
    submission.check_submission_set()
    documents = [ingest._prepare(submission, entry, BASE) for entry in submission.documents]
    ingest._check_unique_documents(documents)
    ingest._check_binaries_used(submission, documents)
    for entry in submission.patches:
        parse_fhirpath_patch(entry.resource)


def _bundle() -> dict[str, Any]:
    bundle = provide_bundle(
        {"reference": "Patient/p1"}, [(b"%PDF-1.7 a", "application/pdf"), (b"b", "text/plain")]
    )
    bundle["entry"].append(
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "operation",
                        "part": [
                            {"name": "type", "valueCode": "replace"},
                            {"name": "path", "valueString": "DocumentReference.status"},
                            {"name": "value", "valueCode": "superseded"},
                        ],
                    }
                ],
            },
            "request": {"method": "PATCH", "url": "DocumentReference/d1"},
        }
    )
    return bundle


VALID_BUNDLE = _bundle()


def test_the_unmutated_bundle_passes_the_plan() -> None:
    plan(copy.deepcopy(VALID_BUNDLE))


@FUZZ
@given(mutated(VALID_BUNDLE, rounds=4))
def test_a_mutated_provide_document_bundle_is_planned_or_refused(bundle: dict[str, Any]) -> None:
    only_vault_errors(plan, bundle)


entries = st.fixed_dictionaries(
    {},
    optional={
        "fullUrl": tricky_text,
        "request": st.fixed_dictionaries(
            {
                "method": st.sampled_from(["POST", "PATCH", "post", "PUT", 7]),
                "url": st.sampled_from(["List", "DocumentReference", "Binary", "Patient", "x/1"]),
            },
            optional={"ifNoneExist": tricky_text},
        )
        | json_values,
        "resource": st.fixed_dictionaries(
            {
                "resourceType": st.sampled_from(
                    ["List", "DocumentReference", "Binary", "Patient", "Parameters", "Bundle"]
                )
            },
            optional={"code": json_values, "subject": json_values, "entry": json_values},
        )
        | json_values,
    },
)


@FUZZ
@given(st.lists(entries, max_size=5))
def test_any_transaction_shape_is_taken_apart_or_refused(items: list[Any]) -> None:
    only_vault_errors(
        Submission.parse, {"resourceType": "Bundle", "type": "transaction", "entry": items}
    )


# -- ITI-105 ---------------------------------------------------------------------------------


def publish_plan(resource: dict[str, Any]) -> None:
    where = "DocumentReference"
    validate_resource(resource, expression=where)
    metadata = extract(resource, where=where)
    if metadata.inline_data is not None:
        content = base64binary.decode(metadata.inline_data, expression=where)
        ingest._check_content(metadata, content, where)
    ingest._replaces(resource, where, BASE, in_bundle=None)


VALID_DOCUMENT = document_reference({"reference": "Patient/p1"}, labels=("N",))
VALID_DOCUMENT["relatesTo"] = [
    {"code": "replaces", "target": {"reference": "DocumentReference/old"}}
]


def test_the_unmutated_document_reference_passes() -> None:
    publish_plan(copy.deepcopy(VALID_DOCUMENT))


@FUZZ
@given(mutated(VALID_DOCUMENT, rounds=3))
def test_a_mutated_document_reference_is_accepted_or_refused(resource: dict[str, Any]) -> None:
    only_vault_errors(publish_plan, resource)


# -- patches ------------------------------------------------------------------------------

STORED = {
    "resourceType": "DocumentReference",
    "status": "current",
    "securityLabel": [{"coding": [{"code": "N"}]}, {"coding": [{"code": "R"}]}],
}
path_text = (
    st.sampled_from(
        [
            "DocumentReference.status",
            "DocumentReference.securityLabel",
            "DocumentReference.securityLabel[1]",
            "DocumentReference.securityLabel[" + "9" * 5000 + "]",
            "DocumentReference.securityLabel[²]",
            "securityLabel.where(coding.code='R')",
            "DocumentReference",
            "DocumentReference.subject",
        ]
    )
    | tricky_text
)
parts = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["type", "path", "name", "value", "index", "other"])},
        optional={
            "valueCode": st.sampled_from(["add", "insert", "replace", "delete", "superseded"]),
            "valueString": path_text,
            "valueInteger": st.integers(min_value=-3, max_value=10**20),
            "valueCoding": json_values,
        },
    )
    | json_values,
    max_size=5,
)
fhirpath_patches = st.fixed_dictionaries(
    {"resourceType": st.just("Parameters")},
    optional={
        "parameter": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["operation", "other"])}, optional={"part": parts}
            )
            | json_values,
            max_size=3,
        )
        | json_values
    },
)
json_patches = (
    st.lists(
        st.fixed_dictionaries(
            {"op": st.sampled_from(["add", "replace", "remove", "test", "move"])},
            optional={
                "path": st.sampled_from(
                    [
                        "/status",
                        "/securityLabel",
                        "/securityLabel/0",
                        "/securityLabel/-",
                        "/securityLabel/" + "9" * 5000,
                        "/securityLabel/01",
                    ]
                )
                | tricky_text,
                "value": json_values,
            },
        )
        | json_values,
        max_size=4,
    )
    | json_values
)


@FUZZ
@given(fhirpath_patches)
def test_any_fhirpath_patch_parses_and_applies_or_is_refused(parameters: dict[str, Any]) -> None:
    operations = only_vault_errors(parse_fhirpath_patch, parameters)
    if operations is not None:
        only_vault_errors(changes_for, copy.deepcopy(STORED), operations)


@FUZZ
@given(json_patches)
def test_any_json_patch_parses_and_applies_or_is_refused(document: Any) -> None:
    operations = only_vault_errors(parse_json_patch, document)
    if operations is not None:
        only_vault_errors(changes_for, copy.deepcopy(STORED), operations)


# -- search parameters ------------------------------------------------------------------

date_text = st.one_of(
    tricky_text,
    st.from_regex(
        r"(eq|ne|gt|lt|ge|le|sa|eb|ap)?[0-9²\u0661]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9:.]{2,12}(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?",
        fullmatch=True,
    ),
    st.sampled_from(
        ["9999", "9999-12", "9999-12-31", "gt9999-12-31T23:59:59Z", "0000", "lt0001-01-01"]
    ),
)


@FUZZ
@given(st.lists(date_text, max_size=3))
def test_any_date_search_parses_into_a_range_or_is_a_bad_request(values: list[str]) -> None:
    criteria: dict[str, Any] = {}
    for value in values:
        only_vault_errors(apply_date, criteria, value)
    for value in values:
        bounds = only_vault_errors(date_bounds, value)
        if bounds is not None:
            assert bounds[1] <= bounds[2]


@FUZZ
@given(st.lists(tricky_text, max_size=3))
def test_any_token_list_splits_or_is_a_bad_request(values: list[str]) -> None:
    found = only_vault_errors(split_or, values)
    assert found is None or all(found)


@FUZZ
@given(tricky_text | st.sampled_from(["20", "0", "²", "٣", "1" * 5000]))
def test_any_count_is_a_page_size_in_bounds_or_a_bad_request(text: str) -> None:
    for parse in (_count, audit_count):
        size = only_vault_errors(parse, text, 20, 200)
        assert size is None or 1 <= size <= 200


@FUZZ
@given(tricky_text | st.sampled_from(["12", "²", "\u0663", "1" * 5000, "-1"]))
def test_any_audit_event_cursor_is_an_entry_id_or_a_bad_request(text: str) -> None:
    cursor = only_vault_errors(parse_cursor, text)
    assert cursor is None or 0 <= cursor < 2**63


@FUZZ
@given(tricky_text | st.sampled_from(['W/"3"', '"²"', 'W/"٣"', "*", '"' + "9" * 5000 + '"']))
def test_any_if_match_names_a_version_or_fails_the_precondition(text: str) -> None:
    only_vault_errors(expected_version, text)
