"""The log as JSON lines for a SIEM: every column of every entry, identifiers and hashes
only (the log never holds health content)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from vault.audit import repository
from vault.audit.checkpoints import format_time
from vault.models import AuditEntry


def export_record(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "occurredAt": format_time(entry.occurred_at),
        "chain": entry.chain_key,
        "seq": entry.chain_seq,
        "leafIndex": entry.leaf_index,
        "patient": entry.patient_id,
        "action": entry.action,
        "outcome": entry.outcome,
        "purpose": entry.purpose,
        "actorRole": entry.actor_role,
        "actor": entry.actor_id,
        "onBehalfOf": entry.on_behalf_of,
        "clientId": entry.client_id,
        "tokenId": entry.token_id,
        "sourceIp": entry.source_ip,
        "resourceType": entry.resource_type,
        "resourceId": entry.resource_id,
        "detail": entry.detail,
        "prevHash": base64.b64encode(entry.prev_hash).decode(),
        "entryHash": base64.b64encode(entry.entry_hash).decode(),
    }


def export_lines(session: Session, since: datetime, after_id: int | None) -> Iterator[str]:
    for entry in repository.entries_since(session, since, after_id):
        yield json.dumps(export_record(entry), sort_keys=True, separators=(",", ":"))
