"""The fast canonical form used by verification is byte for byte the definition the append
path hashes (``canonical_fields``), whatever the fields hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from vault.access.chain import (
    _instant,
    canonical_fields,
    canonical_text,
    detail_json,
    json_string,
)

# Every code point a str can hold and UTF-8 can encode: control characters, quotes,
# backslashes, line and paragraph separators, astral planes (surrogates cannot be hashed by
# either form, and cannot reach a database).
TEXT = st.text(st.characters(exclude_categories=["Cs"]))
OPTIONAL_TEXT = st.none() | TEXT
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)  # NaN != NaN: the round trip below could not compare
    | TEXT
)
DETAIL = st.dictionaries(
    TEXT,
    st.recursive(
        JSON_SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
        max_leaves=12,
    ),
    max_size=6,
)
INSTANTS = st.datetimes(
    min_value=datetime(1, 1, 2),  # naive, as SQLite hands it back
    max_value=datetime(9999, 12, 30),
    timezones=st.none() | st.just(UTC) | st.timezones(),
)


def _fast(fields: dict[str, Any]) -> bytes:
    return canonical_text(
        json_string(fields["chain_key"]),
        fields["chain_seq"],
        _instant(fields["occurred_at"]),
        fields["patient_id"],
        fields["action"],
        fields["outcome"],
        fields["purpose"],
        fields["actor_role"],
        fields["actor_id"],
        fields["on_behalf_of"],
        fields["client_id"],
        fields["token_id"],
        fields["source_ip"],
        fields["resource_type"],
        fields["resource_id"],
        detail_json(fields["detail"]),
    ).encode()


FIELDS = st.fixed_dictionaries(
    {
        "chain_key": TEXT,
        "chain_seq": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "occurred_at": INSTANTS,
        "patient_id": OPTIONAL_TEXT,
        "action": TEXT,
        "outcome": TEXT,
        "purpose": TEXT,
        "actor_role": TEXT,
        "actor_id": OPTIONAL_TEXT,
        "on_behalf_of": OPTIONAL_TEXT,
        "client_id": OPTIONAL_TEXT,
        "token_id": OPTIONAL_TEXT,
        "source_ip": OPTIONAL_TEXT,
        "resource_type": OPTIONAL_TEXT,
        "resource_id": OPTIONAL_TEXT,
        "detail": DETAIL,
    }
)

_NASTY = '"\\\x00\x1f\x7f\u2028\u2029\ud7ff\ue000\U0001f600é"'


@given(FIELDS)
@settings(max_examples=500)
@example(
    {
        "chain_key": _NASTY,
        "chain_seq": 1,
        "occurred_at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-11))),
        "patient_id": None,
        "action": "",
        "outcome": _NASTY,
        "purpose": "\n\t\r\b\f",
        "actor_role": "\\u0000",
        "actor_id": None,
        "on_behalf_of": "</script>",
        "client_id": None,
        "token_id": None,
        "source_ip": None,
        "resource_type": None,
        "resource_id": None,
        "detail": {_NASTY: [_NASTY, 1.5e300, -0.0, 2**70, True, None, {"": {}}], "a": []},
    }
)
def test_the_fast_canonical_form_is_the_definition_byte_for_byte(fields):
    assert _fast(fields) == canonical_fields(**fields)


@given(DETAIL)
def test_a_detail_read_back_from_its_stored_json_encodes_the_same(detail):
    # What the verifier hashes: the column's JSON text, parsed, re-encoded.
    stored = json.dumps(detail)
    assert detail_json(json.loads(stored)) == json.dumps(
        detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


@given(INSTANTS)
def test_the_instant_is_written_in_utc_to_the_microsecond(value):
    written = _instant(value)
    parsed = datetime.fromisoformat(written)
    assert parsed.tzinfo is None
    expected = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    assert parsed == expected
    assert len(written.rpartition(".")[2]) == 6
