"""The body parser: whatever bytes arrive, the answer is a parsed resource or a 400
(BadRequest), never another exception; what FHIR JSON forbids is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.errors import BadRequest, UnsupportedMediaType
from vault.fhir.wire import MAX_DEPTH, parse_json, parse_resource, require_json_media_type

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(st.text(max_size=10), json_values, max_size=6),
    st.sampled_from(["Patient", "Bundle"]),
)
def test_any_json_object_with_a_resource_type_parses_back_unchanged(
    body: dict[str, Any], kind: str
) -> None:
    resource = {**body, "resourceType": kind}
    assert parse_resource(json.dumps(resource).encode(), kind) == resource


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_are_a_bad_request(body: bytes) -> None:
    try:
        resource = parse_resource(body)
    except BadRequest:
        return
    assert isinstance(resource["resourceType"], str)
    assert json.dumps(resource, ensure_ascii=False).encode("utf-8")


@given(st.text(alphabet='{}[]":,\\u0123456789abcdefnrtl \n', max_size=80))
def test_arbitrary_json_like_text_parses_or_is_a_bad_request(text: str) -> None:
    try:
        document = parse_json(text.encode())
    except BadRequest:
        return
    # Whatever is accepted can be stored and sent back as UTF-8.
    assert json.loads(json.dumps(document, ensure_ascii=False).encode("utf-8")) == document


def test_a_byte_order_mark_is_ignored() -> None:
    assert parse_resource(b'\xef\xbb\xbf{"resourceType": "Patient"}') == {"resourceType": "Patient"}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "not valid JSON"),
        (b'{"resourceType": "Patient"', "not valid JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"resourceType": "Patient", "a": NaN}', "not valid JSON"),
        (b'{"resourceType": "Patient", "a": Infinity}', "not valid JSON"),
        (b'{"resourceType": "Patient", "id": "a", "id": "b"}', "repeats a JSON property"),
        (b'{"resourceType": "Patient", "name": "\\ud800"}', "Unicode"),
        (b'{"resourceType": "Patient", "\\udfff": 1}', "Unicode"),
        (b"[]", "no resourceType"),
        (b'{"id": "x"}', "no resourceType"),
        (b'{"resourceType": 3}', "no resourceType"),
        (b'"Patient"', "no resourceType"),
    ],
)
def test_what_fhir_json_forbids_is_a_bad_request(body: bytes, why: str) -> None:
    with pytest.raises(BadRequest, match=why):
        parse_resource(body)


def test_nesting_beyond_the_bound_is_refused() -> None:
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH + 1):
        deep = {"a": deep}
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_resource(json.dumps({"resourceType": "Patient", "x": deep}).encode())
    recursion_bomb = b'{"resourceType": "Patient", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(BadRequest):
        parse_resource(recursion_bomb)


def test_the_wrong_resource_type_is_a_bad_request_naming_both() -> None:
    with pytest.raises(BadRequest, match="Expected Bundle, got Patient") as raised:
        parse_resource(b'{"resourceType": "Patient"}', "Bundle")
    assert raised.value.expression == "resourceType"


@pytest.mark.parametrize(
    "header",
    [
        "application/fhir+json",
        "application/json",
        "application/json+fhir",
        "application/fhir+json; charset=utf-8",
        "Application/FHIR+JSON;fhirVersion=4.0",
        "application/json; charset=UTF-8",
    ],
)
def test_json_media_types_are_accepted(header: str) -> None:
    require_json_media_type(header)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("application/fhir+xml", "XML is not supported"),
        ("application/xml", "XML is not supported"),
        ("text/xml; charset=utf-8", "XML is not supported"),
        ("text/plain", "Unsupported media type text/plain"),
        (None, "Unsupported media type (none)"),
    ],
)
def test_other_media_types_are_unsupported(header: str | None, why: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=why.replace("(", r"\(").replace(")", r"\)")):
        require_json_media_type(header)
