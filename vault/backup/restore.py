"""``vault restore data``: load a backup into an empty database and blob store.

The order matters:

1. Open the archive with the key provider (no keys, no restore -- before anything is
   touched).
2. Bring the empty database to the schema revision the backup was taken at.
3. Load every table and blob in ONE transaction; a damaged archive, a missing row or a
   failed write rolls it all back, and blobs already written to a non-transactional store
   are removed. Nothing is left half-restored.
4. Upgrade the schema to the running code's head.
5. Replay deletions the backup predates (vault/backup/shreds.py), so that a document a
   patient deleted after the backup was taken stays deleted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic.util.exc import CommandError

from vault.backup import codec, repository
from vault.backup.archive import (
    BLOB,
    INFO,
    ROWS,
    SUMMARY,
    ArchiveReader,
    BackupError,
)
from vault.backup.export import SKIPPED_TABLES
from vault.db import Session
from vault.migrations import upgrade
from vault.observability.progress import Tracker, progress
from vault.services import Services
from vault.storage.blobs.base import BlobStore
from vault.storage.keys.provider import KeyProvider


@dataclass
class RestoreSummary:
    backup_id: str
    created_at: str
    schema_revision: str
    tables: dict[str, int] = field(default_factory=dict)
    blobs: int = 0
    tombstones: list[dict[str, Any]] = field(default_factory=list)


RowsSink = Callable[[str, list[dict[str, Any]]], None]
BlobSink = Callable[[str, Iterator[bytes]], None]


def _open(archive: ArchiveReader, provider: KeyProvider) -> tuple[dict[str, Any], RestoreSummary]:
    first = archive.next_frame()
    if first is None or first.kind != INFO:
        raise BackupError("The backup does not start with its description")
    info: dict[str, Any] = json.loads(first.data)
    # Opening the archive proves one master key is here; the patient keys inside may be
    # wrapped under others, and without them the restored documents would not open.
    missing = sorted(set(info["master_key_ids"]) - set(provider.master_key_ids()))
    if missing:
        raise BackupError(
            f"The backup's patient keys need master keys this key provider lacks: {', '.join(missing)}"
        )
    summary = RestoreSummary(
        backup_id=archive.header.backup_id,
        created_at=archive.header.created_at,
        schema_revision=str(info["schema_revision"]),
    )
    return info, summary


def _total(info: dict[str, Any]) -> int:
    return sum(int(count) for count in info["tables"].values()) + int(info["blobs"])


def read_backup(provider: KeyProvider, path: Path) -> RestoreSummary:
    """Read a whole backup, writing nothing: it opens, authenticates and is complete."""
    with ArchiveReader(path, provider) as archive:
        info, summary = _open(archive, provider)
        with progress("verify", total=_total(info)) as bar:
            closing = _walk(archive, summary, bar, None, None)
        _check_complete(info, closing, summary)
    return summary


def restore_backup(services: Services, path: Path) -> RestoreSummary:
    """Steps 1 to 4; the caller replays deletions (step 5) with vault.backup.shreds."""
    url = services.engine.url.render_as_string(hide_password=False)
    with ArchiveReader(path, services.key_provider) as archive:
        info, summary = _open(archive, services.key_provider)
        if not services.blobs.transactional:
            # (A db: store's chunks are rows, which _prepare_schema finds empty or refuses.)
            _check_blob_store_empty(services.blobs)
        _prepare_schema(services, url, summary.schema_revision)
        written: list[str] = []
        try:
            with (
                Session(services.engine) as session,
                session.begin(),
                progress("restore", total=_total(info)) as bar,
            ):
                tables = {table.name: table for table in repository.tables(session.connection())}

                def insert(name: str, rows: list[dict[str, Any]]) -> None:
                    table = tables.get(name)
                    if table is None:
                        raise BackupError(f"The backup holds rows for an unknown table {name}")
                    repository.insert_rows(
                        session, table, [codec.decode_row(table, row) for row in rows]
                    )

                def put(key: str, chunks: Iterator[bytes]) -> None:
                    written.append(key)
                    services.blobs.put(session, key, chunks)

                closing = _walk(archive, summary, bar, insert, put)
                _check_complete(info, closing, summary)
                repository.reset_sequences(session.connection())
        except BaseException:
            if not services.blobs.transactional:
                with Session(services.engine) as session:
                    for key in written:
                        services.blobs.delete(session, key)
            raise
    services.engine.dispose()
    upgrade(url)
    return summary


def _prepare_schema(services: Services, url: str, revision: str) -> None:
    """An empty database gets the backup's schema; one already at that revision must hold
    no rows. Anything else is refused: a restore never merges into live data."""
    with services.engine.connect() as connection:
        names = repository.table_names(connection)
        current = repository.recorded_revision(connection) if "alembic_version" in names else None
        if current is not None and current != revision:
            raise BackupError(
                f"The target database is at schema revision {current}, the backup at "
                f"{revision}: restore into an empty database"
            )
        if current is None and names:
            raise BackupError(
                "The target database has tables but no vault schema: use an empty one"
            )
        if current is not None:
            for table in repository.tables(connection):
                if repository.count_rows(connection, table):
                    raise BackupError(
                        f"The target database is not empty (table {table.name}): a restore "
                        "never merges into existing data"
                    )
    if current is None:
        try:
            upgrade(url, revision)
        except CommandError:
            raise BackupError(
                f"The backup's schema revision {revision} is unknown to this vault: restore "
                "with the vault version that made it (or a later one)"
            ) from None


def _check_blob_store_empty(store: BlobStore) -> None:
    if next(iter(store.list_older_than(datetime.now(UTC) + timedelta(days=1))), None):
        raise BackupError("The target blob store is not empty: restore into an empty one")


def _walk(
    archive: ArchiveReader,
    summary: RestoreSummary,
    bar: Tracker,
    on_rows: RowsSink | None,
    on_blob: BlobSink | None,
) -> dict[str, Any]:
    """Every frame to its sink, counted; returns the closing summary."""
    while (frame := archive.next_frame()) is not None:
        if frame.kind == ROWS:
            if frame.name in SKIPPED_TABLES:
                raise BackupError(f"The backup holds rows for table {frame.name}")
            rows = [json.loads(line) for line in frame.data.split(b"\n")]
            if on_rows is not None:
                on_rows(frame.name, rows)
            summary.tables[frame.name] = summary.tables.get(frame.name, 0) + len(rows)
            bar.advance(len(rows))
        elif frame.kind == BLOB:
            chunks = archive.blob_chunks()
            if on_blob is not None:
                on_blob(frame.name, chunks)
            for _rest in chunks:
                pass  # a sink that stopped early must not leave chunks to be read as frames
            summary.blobs += 1
            bar.advance()
        elif frame.kind == SUMMARY:
            closing: dict[str, Any] = json.loads(frame.data)
            if archive.next_frame() is not None:
                raise BackupError("The backup continues after its closing summary")
            return closing
        else:
            raise BackupError("The backup holds a frame this vault does not know")
    raise BackupError("The backup ends before its closing summary (truncated)")


def _check_complete(info: dict[str, Any], closing: dict[str, Any], summary: RestoreSummary) -> None:
    expected = {name: int(count) for name, count in info["tables"].items() if int(count)}
    if summary.tables != expected or summary.blobs != int(info["blobs"]):
        raise BackupError("The backup's content does not match its own description")
    if closing.get("schema_revision") != info["schema_revision"]:
        raise BackupError("The backup's closing summary does not match its description")
    summary.tombstones = list(closing.get("tombstones", []))
