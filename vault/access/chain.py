"""Entry hashing. Each entry commits to the previous entry of its chain:
``entry_hash = SHA-256(prev_hash || canonical JSON of the entry)``.

``canonical_fields`` is the definition. ``canonical_text`` builds the same bytes about
three times faster, for verifying millions of entries; tests/audit/test_chain.py holds
it to ``canonical_fields`` over arbitrary values.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = bytes(32)
NO_PATIENT_CHAIN = "-"


def canonical_fields(
    *,
    chain_key: str,
    chain_seq: int,
    occurred_at: datetime,
    patient_id: str | None,
    action: str,
    outcome: str,
    purpose: str,
    actor_role: str,
    actor_id: str | None,
    on_behalf_of: str | None,
    client_id: str | None,
    token_id: str | None,
    source_ip: str | None,
    resource_type: str | None,
    resource_id: str | None,
    detail: dict[str, Any],
) -> bytes:
    document = {
        "chain": chain_key,
        "seq": chain_seq,
        "at": _instant(occurred_at),
        "patient": patient_id,
        "action": action,
        "outcome": outcome,
        "purpose": purpose,
        "role": actor_role,
        "actor": actor_id,
        "obo": on_behalf_of,
        "client": client_id,
        "token": token_id,
        "ip": source_ip,
        "rtype": resource_type,
        "rid": resource_id,
        "detail": detail,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _instant(value: datetime) -> str:
    # Written in UTC; PostgreSQL hands it back in the session's time zone, SQLite naive.
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds")


# What json.dumps(..., ensure_ascii=False) encodes strings with, and the same encoder
# settings for the nested detail: encoding it on its own yields the bytes it has inside
# the whole document.
json_string = json.encoder.encode_basestring
detail_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode

# The document's keys in sorted order, as sort_keys writes them.
_TEMPLATE = (
    '{"action":%s,"actor":%s,"at":"%s","chain":%s,"client":%s,"detail":%s,"ip":%s,'
    '"obo":%s,"outcome":%s,"patient":%s,"purpose":%s,"rid":%s,"role":%s,"rtype":%s,'
    '"seq":%d,"token":%s}'
)


def canonical_text(
    chain_json: str,
    chain_seq: int,
    instant: str,
    patient_id: str | None,
    action: str,
    outcome: str,
    purpose: str,
    actor_role: str,
    actor_id: str | None,
    on_behalf_of: str | None,
    client_id: str | None,
    token_id: str | None,
    source_ip: str | None,
    resource_type: str | None,
    resource_id: str | None,
    detail: str,
) -> str:
    """``canonical_fields`` as text, from the chain key already JSON-encoded (it is the
    same for a whole chain), the instant as ``_instant`` writes it and the detail as
    ``detail_json`` writes it. Encode it as UTF-8 to hash it."""
    # Written out rather than a helper per field: a call per field is a quarter of the cost.
    string = json_string
    return _TEMPLATE % (
        "null" if action is None else string(action),
        "null" if actor_id is None else string(actor_id),
        instant,
        chain_json,
        "null" if client_id is None else string(client_id),
        detail,
        "null" if source_ip is None else string(source_ip),
        "null" if on_behalf_of is None else string(on_behalf_of),
        "null" if outcome is None else string(outcome),
        "null" if patient_id is None else string(patient_id),
        "null" if purpose is None else string(purpose),
        "null" if resource_id is None else string(resource_id),
        "null" if actor_role is None else string(actor_role),
        "null" if resource_type is None else string(resource_type),
        chain_seq,
        "null" if token_id is None else string(token_id),
    )


def entry_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical).digest()
