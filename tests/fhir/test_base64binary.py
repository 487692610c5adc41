"""FHIR base64Binary: RFC 4648 base64 with padding, whitespace only between groups of four
characters, never empty -- the R4 regex ``(\\s*([0-9a-zA-Z\\+/=]){4}\\s*)+``."""

from __future__ import annotations

import base64
import binascii
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.errors import InvalidResource
from vault.fhir.base64binary import decode, encode

SPEC_REGEX = re.compile(r"([ \t\r\n]*([0-9a-zA-Z+/=]){4}[ \t\r\n]*)+")
WHITESPACE = st.text(alphabet=" \t\r\n", min_size=1, max_size=3)


def reference_decode(value: str) -> bytes | None:
    """An independent reading of the specification: the regex, then strict RFC 4648."""
    if not SPEC_REGEX.fullmatch(value):
        return None
    compact = re.sub(r"[ \t\r\n]", "", value)
    try:
        return binascii.a2b_base64(compact.encode(), strict_mode=True)
    except binascii.Error:
        return None


@st.composite
def wrapped(draw: st.DrawFn) -> tuple[bytes, str]:
    """Bytes and their encoding with whitespace dropped between random groups of four."""
    content = draw(st.binary(min_size=1, max_size=200))
    encoded = encode(content)
    quads = [encoded[i : i + 4] for i in range(0, len(encoded), 4)]
    text = draw(st.sampled_from(["", " ", "\n", "\r\n"]))
    for quad in quads:
        text += quad + draw(st.one_of(st.just(""), WHITESPACE))
    return content, text


@given(st.binary(min_size=1, max_size=2000))
def test_decode_inverts_encode(content: bytes) -> None:
    assert decode(encode(content), expression="x") == content


@given(wrapped())
def test_whitespace_between_groups_of_four_is_ignored(case: tuple[bytes, str]) -> None:
    content, text = case
    assert decode(text, expression="x") == content


def test_mime_line_wrapping_at_76_characters_is_accepted() -> None:
    content = bytes(range(256)) * 3
    assert decode(base64.encodebytes(content).decode(), expression="x") == content


@given(st.text(alphabet="ABCDabcd0189+/= \n", max_size=24))
def test_accepts_exactly_what_the_specification_accepts(value: str) -> None:
    expected = reference_decode(value)
    if expected is None:
        with pytest.raises(InvalidResource):
            decode(value, expression="x")
    else:
        assert decode(value, expression="x") == expected


@given(
    st.binary(min_size=1, max_size=60),
    st.characters(
        exclude_characters="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n"
    ),
)
def test_a_character_outside_the_alphabet_is_refused(content: bytes, bad: str) -> None:
    encoded = encode(content)
    with pytest.raises(InvalidResource, match="base64Binary"):
        decode(encoded[:4] + bad + encoded[4:], expression="x")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("SGVsbG8", "padding is required"),
        ("SGVsbA", "padding is required"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("SG Vs bG8=", "between groups of 4"),
        ("SGVs\nbG8", "between groups"),
        ("SGk=SGk=", "only A-Z"),
        ("S===", "only A-Z"),
        ("SGVsbG8-", "only A-Z"),
        ("SGVsbG8_", "only A-Z"),
        ("SGV\u00a0bG8=", "only A-Z"),
    ],
)
def test_malformed_base64_is_refused_with_the_reason(value: str, why: str) -> None:
    with pytest.raises(InvalidResource, match=re.escape(why)) as raised:
        decode(value, expression="Binary.data")
    assert raised.value.expression == "Binary.data"


def test_a_non_string_is_refused() -> None:
    with pytest.raises(InvalidResource, match="must be a string"):
        decode(1234, expression="x")
