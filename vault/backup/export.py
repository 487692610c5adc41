"""``vault backup create``: one consistent snapshot of the database and the blobs it
points to, written as an encrypted archive (vault/backup/archive.py).

Consistency: every table is read inside one read-only transaction (REPEATABLE READ on
PostgreSQL, a single read transaction on SQLite), so rows, audit entries and chain heads
agree with each other exactly as at one instant, while the vault keeps serving. Blobs are
immutable once written and are only ever added before the row that points to them
commits, so each blob a snapshot row names can be copied after the fact.

What is left out, on purpose: the content of crypto-shredded documents (its key is gone;
the ciphertext is noise), blobs no row points to (orphans of interrupted uploads), the
``db:`` store's chunk table (its blobs are carried as blobs, so a backup restores into
any store), and the migration bookkeeping (the restore rebuilds the schema itself).
Keys are never in the archive: the archive key is wrapped by the key provider.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vault.backup import codec, repository
from vault.backup.archive import INFO, ROWS, SUMMARY, ArchiveWriter, BackupError
from vault.backup.repository import Connection, Table
from vault.models import StoredBlobChunk
from vault.observability.progress import Tracker, progress
from vault.services import Services

SKIPPED_TABLES = frozenset({"alembic_version", StoredBlobChunk.__tablename__})
BATCH_ROWS = 500
BATCH_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class BackupSummary:
    backup_id: str
    path: Path
    tables: dict[str, int]
    blobs: int
    blob_bytes: int
    schema_revision: str


def schema_revision(connection: Connection) -> str:
    revision = repository.schema_revision(connection)
    if revision is None:
        raise BackupError("The database has no schema revision: is it a vault database?")
    return revision


def create_backup(services: Services, path: Path) -> BackupSummary:
    if path.exists():
        raise BackupError(f"{path} exists; a backup never overwrites a file")
    with services.engine.connect() as connection:
        repository.begin_snapshot(connection)
        revision = schema_revision(connection)
        tables = repository.tables(connection, SKIPPED_TABLES)
        counts = {table.name: repository.count_rows(connection, table) for table in tables}
        blob_count = repository.count_live_blobs(connection)
        info: dict[str, Any] = {
            "schema_revision": revision,
            "source_dialect": connection.dialect.name,
            "tables": counts,
            "blobs": blob_count,
            "master_key_ids": repository.master_key_ids(connection),
        }
        with (
            ArchiveWriter(path, services.key_provider) as archive,
            progress("backup", total=sum(counts.values()) + blob_count) as bar,
        ):
            archive.json_frame(INFO, "info", info)
            for table in tables:
                _write_table(connection, archive, table, bar)
            blob_bytes = 0
            keys = repository.live_blob_keys(connection)
            written = 0
            for key in keys:
                blob_bytes += archive.blob(key, services.blobs.read(key))
                written += 1
                bar.advance()
            if written != blob_count:
                raise BackupError("The snapshot changed while it was read")
            tombstones = [
                {"document_id": document_id, "deleted_at": codec.encode_value(deleted_at)}
                for document_id, deleted_at in repository.deletions(connection)
            ]
            archive.json_frame(
                SUMMARY,
                "summary",
                {**info, "blob_bytes": blob_bytes, "tombstones": tombstones},
            )
        connection.rollback()
    return BackupSummary(
        backup_id=archive.header.backup_id,
        path=path,
        tables=counts,
        blobs=blob_count,
        blob_bytes=blob_bytes,
        schema_revision=revision,
    )


def _write_table(
    connection: Connection, archive: ArchiveWriter, table: Table, bar: Tracker
) -> None:
    rows = repository.table_rows(connection, table, BATCH_ROWS)
    for batch in _batches(codec.encode_row(table, row) for row in rows):
        archive.frame(ROWS, table.name, b"\n".join(batch))
        bar.advance(len(batch))


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    size = 0
    for row in rows:
        line = json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()
        batch.append(line)
        size += len(line)
        if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
