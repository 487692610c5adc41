"""The log as JSON lines for a SIEM: every column of every entry, identifiers and hashes
only (the log never holds health content)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from vault.access.chain import HASHED_FIELDS
from vault.audit import repository
from vault.audit.checkpoints import format_time
from vault.db import Session
from vault.models import AuditEntry

# Named first, in this order, as the export has always written them; then the rest of
# what the hash covers, in HASHED_FIELDS' order.
_FIRST = ("chain_key", "chain_seq")


def export_record(entry: AuditEntry) -> dict[str, Any]:
    record: dict[str, Any] = {"id": entry.id, "occurredAt": format_time(entry.occurred_at)}
    by_column = {field.column: field for field in HASHED_FIELDS}
    for column in _FIRST:
        record[by_column[column].export] = getattr(entry, column)
    record["leafIndex"] = entry.leaf_index
    for field in HASHED_FIELDS:
        if field.column not in (*_FIRST, "occurred_at"):
            record[field.export] = getattr(entry, field.column)
    record["prevHash"] = base64.b64encode(entry.prev_hash).decode()
    record["entryHash"] = base64.b64encode(entry.entry_hash).decode()
    return record


def export_lines(session: Session, since: datetime, after_id: int | None) -> Iterator[str]:
    for entry in repository.entries_since(session, since, after_id):
        yield json.dumps(export_record(entry), sort_keys=True, separators=(",", ":"))
