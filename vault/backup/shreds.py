"""Keeping deletions deleted when an older backup comes back.

A document is deleted by crypto-shredding: its data keys are destroyed in the database.
A backup taken before that still holds them (wrapped), so restoring it would bring the
document back. Every deletion leaves a tombstone in the database (``documents.deleted_at``),
so after a restore the vault replays the tombstones of every newer source the operator
can reach:

- the database the backup replaces, or one of its replicas, when still readable
  (``--shreds-from postgresql+psycopg://...``);
- a newer backup (``--shreds-from newer.vbk``);
- a shred list, the tombstones alone, small enough to export every few minutes with
  ``vault backup shreds`` (``--shreds-from shreds.json``). It carries a MAC keyed by the
  key provider, so that nobody can make a restore destroy documents by editing it.

Beyond the newest surviving source, what bounds the exposure is the retention rule
(docs/operations.md): data backups expire, and the master keys they need are retired
when they do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vault.access.service import AccessService
from vault.backup import repository as backup_repository
from vault.backup.archive import MAGIC, SUMMARY, ArchiveReader, BackupError
from vault.db import Session, make_engine
from vault.documents import repository
from vault.identity.principal import Principal, Role
from vault.models.base import utcnow
from vault.storage.keys.provider import KeyProvider

SHRED_LIST_KIND = "vault-shred-list"
_MAC_PURPOSE = "backup-shred-list"


@dataclass(frozen=True)
class Tombstone:
    document_id: str
    deleted_at: datetime

    def encode(self) -> dict[str, str]:
        return {"document_id": self.document_id, "deleted_at": self.deleted_at.isoformat()}

    @classmethod
    def decode(cls, item: dict[str, Any]) -> Tombstone:
        return cls(str(item["document_id"]), _utc(datetime.fromisoformat(str(item["deleted_at"]))))


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; the vault writes them in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def tombstones_in(session: Session) -> list[Tombstone]:
    return [
        Tombstone(document_id, _utc(deleted_at))
        for document_id, deleted_at in backup_repository.deletions_in_order(session)
        if deleted_at is not None
    ]


# -- the shred list file -------------------------------------------------------------------


def _mac(provider: KeyProvider, payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return provider.blind_index(_MAC_PURPOSE, canonical).hex()


def write_shred_list(path: Path, tombstones: list[Tombstone], provider: KeyProvider) -> None:
    payload = {
        "kind": SHRED_LIST_KIND,
        "format": 1,
        "taken_at": utcnow().isoformat(),
        "documents": [tombstone.encode() for tombstone in tombstones],
    }
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps({**payload, "mac": _mac(provider, payload)}, indent=1))
    partial.replace(path)


def read_shred_list(path: Path, provider: KeyProvider) -> list[Tombstone]:
    try:
        document = json.loads(path.read_text())
        mac = document.pop("mac")
    except (ValueError, KeyError, AttributeError):
        raise BackupError(f"{path} is not a shred list") from None
    if document.get("kind") != SHRED_LIST_KIND or mac != _mac(provider, document):
        raise BackupError(f"{path} is not a shred list made by this vault, or was altered")
    return [Tombstone.decode(item) for item in document["documents"]]


# -- sources ------------------------------------------------------------------------------


def _from_archive(path: Path, provider: KeyProvider) -> list[Tombstone]:
    with ArchiveReader(path, provider) as archive:
        while (frame := archive.next_frame()) is not None:
            if frame.kind == SUMMARY:
                summary = json.loads(frame.data)
                return [Tombstone.decode(item) for item in summary.get("tombstones", [])]
    raise BackupError(f"{path} ends before its closing summary")


def _from_database(url: str) -> list[Tombstone]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return tombstones_in(session)
    finally:
        engine.dispose()


def load_tombstones(source: str, provider: KeyProvider) -> list[Tombstone]:
    """``source``: a database URL, a data backup, or a shred list."""
    if "://" in source:
        return _from_database(source)
    path = Path(source)
    with path.open("rb") as handle:
        is_archive = handle.read(len(MAGIC)) == MAGIC
    return _from_archive(path, provider) if is_archive else read_shred_list(path, provider)


# -- replay -------------------------------------------------------------------------------


def replay(
    session: Session, tombstones: list[Tombstone], access: AccessService, operator: str
) -> int:
    """Shred again every document the tombstones name that the restored database still
    holds alive, exactly as DocumentService.delete does, and record each in the audit log.
    Returns how many were shredded."""
    shredded = 0
    principal = Principal(role=Role.OPERATOR, subject=operator)
    for tombstone in {t.document_id: t for t in tombstones}.values():
        document = repository.get_for_update(session, tombstone.document_id)
        if document is None or document.deleted_at is not None:
            continue
        repository.shred(session, document, tombstone.deleted_at)
        access.record_replayed_deletion(
            session, principal, document.patient_id, document.id, tombstone.deleted_at
        )
        shredded += 1
    session.flush()
    return shredded
