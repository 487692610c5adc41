"""Checkpoints: signed statements "the log had N entries and this root hash at this time".

The body follows the C2SP tlog-checkpoint format (origin, tree size, base64 root hash)
with one extension line for the time; it is signed as a C2SP signed note. Outside
parties keep the notes they fetched: any later rewrite of the log changes a root they
hold, and any truncation makes a tree smaller than one they hold.

Each audit log's tree has its own checkpoints. A single log's origin is the configured one
(``VAULT_AUDIT_LOG_ORIGIN``); with several, log ``i``'s is that origin followed by
``/<i>``, so that no checkpoint of one log passes for one of another.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vault.audit.repository import checkpoints as checkpoint_rows
from vault.audit.repository.tree import AuditTree
from vault.audit.signing import NoteVerifier, SignatureError, SigningKey, open_note
from vault.db import Session, SessionFactory, unit_of_work
from vault.models import AuditCheckpoint
from vault.models.base import utcnow

TIME_PREFIX = "time "


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    timestamp: datetime


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def checkpoint_body(checkpoint: Checkpoint) -> str:
    root = base64.b64encode(checkpoint.root_hash).decode()
    return (
        f"{checkpoint.origin}\n{checkpoint.tree_size}\n{root}\n"
        f"{TIME_PREFIX}{format_time(checkpoint.timestamp)}\n"
    )


def parse_checkpoint_body(body: str) -> Checkpoint:
    lines = body.split("\n")
    if len(lines) != 5 or lines[4] != "" or not lines[3].startswith(TIME_PREFIX):
        raise SignatureError("Not a vault checkpoint")
    origin, size_text, root_text, time_line = lines[:4]
    try:
        size = int(size_text)
        root = base64.b64decode(root_text, validate=True)
        at = datetime.strptime(time_line.removeprefix(TIME_PREFIX), "%Y-%m-%dT%H:%M:%S.%fZ")
    except (ValueError, binascii.Error):
        raise SignatureError("Not a vault checkpoint") from None
    if size < 0 or len(root) != 32 or not size_text.isdigit():
        raise SignatureError("Not a vault checkpoint")
    return Checkpoint(origin, size, root, at.replace(tzinfo=UTC))


def open_checkpoint(note: str, verifiers: list[NoteVerifier], origin: str) -> Checkpoint:
    """A checkpoint whose signature is valid and whose origin is this log's."""
    return open_checkpoint_of(note, verifiers, {origin: 0})[1]


def open_checkpoint_of(
    note: str, verifiers: list[NoteVerifier], origins: dict[str, int]
) -> tuple[int, Checkpoint]:
    """A checkpoint whose signature is valid and whose origin is one of this vault's logs,
    with that log's id."""
    checkpoint = parse_checkpoint_body(open_note(note, verifiers).body)
    log = origins.get(checkpoint.origin)
    if log is None:
        raise SignatureError("The checkpoint is for another log")
    return log, checkpoint


def log_origin(origin: str, logs: int, log: int) -> str:
    """The origin line of a log's checkpoints, among ``logs`` logs."""
    return origin if logs == 1 else f"{origin}/{log}"


def checkpoint_json(row: AuditCheckpoint) -> dict[str, Any]:
    return {
        "treeSize": row.tree_size,
        "rootHash": base64.b64encode(row.root_hash).decode(),
        "timestamp": format_time(row.created_at),
        "keyId": row.key_id,
        "note": row.note,
    }


class CheckpointService:
    def __init__(
        self,
        tree: AuditTree,
        key: SigningKey,
        trusted: list[NoteVerifier],
        *,
        batch: int = 5000,
    ) -> None:
        self.tree = tree
        self.key = key
        self.origin = key.name
        self._trusted = trusted
        self._batch = batch

    def verifiers(self) -> list[NoteVerifier]:
        """Keys whose checkpoints this log accepts: its own, and earlier ones trusted in
        the settings (after a key rotation)."""
        own = self.key.verifier_if_present()
        mine = [own] if own is not None else []
        return mine + [v for v in self._trusted if v not in mine]

    def make(self, factory: SessionFactory, log: int = 0) -> AuditCheckpoint | None:
        """Take every committed entry into its log's tree, then sign each log's new head.
        Returns ``log``'s latest checkpoint (unchanged when nothing new was committed)."""
        with factory() as session:
            logs = self.tree.logs(session)
        made: AuditCheckpoint | None = None
        for each in range(logs):
            latest = self._make_one(factory, each, logs)
            if each == log:
                made = latest
        return made

    def make_for_chain(self, factory: SessionFactory, chain_key: str) -> AuditCheckpoint | None:
        """``make``, returning the latest checkpoint of the log a chain (a patient's id)
        belongs to: the one that proves that chain's entries."""
        with factory() as session:
            log = self.tree.log_of_chain(session, chain_key)
        return self.make(factory, log)

    def _make_one(self, factory: SessionFactory, log: int, logs: int) -> AuditCheckpoint | None:
        while True:
            with unit_of_work(factory) as session:
                added = self.tree.extend(session, self._batch, log)
                if added == self._batch:
                    continue
                return self._sign_head(session, log, logs)

    def _sign_head(self, session: Session, log: int, logs: int) -> AuditCheckpoint | None:
        size = self.tree.lock(session, log)
        latest = self.latest(session, log)
        if size == 0 or (latest is not None and latest.tree_size >= size):
            return latest
        checkpoint = Checkpoint(
            log_origin(self.origin, logs, log), size, self.tree.root(session, size, log), utcnow()
        )
        row = AuditCheckpoint(
            log_id=log,
            tree_size=size,
            root_hash=checkpoint.root_hash,
            created_at=checkpoint.timestamp,
            key_id=self.key.signer().verifier.key_id,
            note=self.key.signer().sign(checkpoint_body(checkpoint)),
        )
        session.add(row)
        session.flush()
        return row

    def latest(self, session: Session, log: int = 0) -> AuditCheckpoint | None:
        return checkpoint_rows.latest(session, log)

    def get(self, session: Session, tree_size: int, log: int = 0) -> AuditCheckpoint | None:
        return checkpoint_rows.get(session, tree_size, log)

    def page(
        self, session: Session, before: int | None, count: int, log: int = 0
    ) -> list[AuditCheckpoint]:
        """Newest first; ``before`` is a tree size, for the next page."""
        return checkpoint_rows.page(session, before, count, log)
