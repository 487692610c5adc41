"""Entry hashing. Each entry commits to the previous entry of its chain:
``entry_hash = SHA-256(prev_hash || canonical JSON of the entry)``."""

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


def entry_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical).digest()
