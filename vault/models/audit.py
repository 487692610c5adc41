from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from vault.models.base import Base, utcnow


class AuditEntry(Base):
    """One access decision. Identifiers only, never health content.

    ``chain_key`` groups entries into independent hash chains (one per patient, one for
    entries that name no patient) so writers for different patients do not contend; it
    leads the primary key, so the table can be distributed by it (docs/scaling.md).
    ``log_id`` is the audit log (Merkle tree) the chain belongs to, and ``leaf_index`` the
    entry's position in that log's tree, assigned when a checkpoint takes it in (commit
    order, not id order, decides that). The id stays the entry's name everywhere (the
    API, notifications, the history's paging): the mapper keys entries by it.
    """

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_id", "id"),
        Index("ix_audit_entries_patient_time", "patient_id", "id"),
        # A position is unique within its log: the tree's own leaf node (level 0, its
        # primary key) holds that; this index only finds the entry at a leaf.
        Index("ix_audit_entries_leaf", "log_id", "leaf_index"),
        # What the checkpointer still has to take into each tree: a small, hot index.
        Index(
            "ix_audit_entries_unplaced",
            "log_id",
            "id",
            postgresql_where=text("leaf_index IS NULL"),
            sqlite_where=text("leaf_index IS NULL"),
        ),
        Index("ix_audit_entries_occurred_at", "occurred_at"),
    )

    # Drawn by the append with the chain's claim: PostgreSQL's sequence, SQLite's largest
    # id plus one (one writer at a time there).
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    chain_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    chain_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    patient_id: Mapped[str | None] = mapped_column(String(64), default=None)
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(32))
    actor_role: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str | None] = mapped_column(String(128), default=None)
    on_behalf_of: Mapped[str | None] = mapped_column(String(128), default=None)
    client_id: Mapped[str | None] = mapped_column(String(128), default=None)
    token_id: Mapped[str | None] = mapped_column(String(128), default=None)
    source_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    resource_type: Mapped[str | None] = mapped_column(String(64), default=None)
    resource_id: Mapped[str | None] = mapped_column(String(64), default=None)
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    log_id: Mapped[int] = mapped_column(SmallInteger, default=0)
    leaf_index: Mapped[int | None] = mapped_column(BigInteger, default=None)

    __mapper_args__ = {"primary_key": [id]}


class AuditChainHead(Base):
    """The last link of each chain; its row lock serialises appends to one chain.

    ``log_id`` is the audit log the chain was assigned to when its first entry was
    written, once and for all (vault/access/journal)."""

    __tablename__ = "audit_chain_heads"

    chain_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    log_id: Mapped[int] = mapped_column(SmallInteger, default=0)


class AuditTreeHead(Base):
    """How many entries each log's Merkle tree holds: one row per log, whose lock makes one
    checkpointer at a time (across every server process) extend that tree. The number of
    rows is the number of logs (none yet: one), fixed while the log is empty
    (``vault audit logs``)."""

    __tablename__ = "audit_tree_head"

    log_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)


class AuditTreeNode(Base):
    """The hash of a complete subtree of one log's tree: the leaves from
    ``node_index * 2**level`` up to ``(node_index + 1) * 2**level`` (excluded).

    Stored so that proofs cost O(log n) lookups instead of rehashing the log; every node
    is recomputed from the entries by ``vault audit verify``, never trusted."""

    __tablename__ = "audit_tree_nodes"

    log_id: Mapped[int] = mapped_column(
        SmallInteger, primary_key=True, autoincrement=False, default=0
    )
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    node_index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    """A signed tree head of one log: the signed note is what outside parties keep and
    compare."""

    __tablename__ = "audit_checkpoints"

    log_id: Mapped[int] = mapped_column(
        SmallInteger, primary_key=True, autoincrement=False, default=0
    )
    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    key_id: Mapped[str] = mapped_column(String(16))
    # The exact signed text (C2SP signed note): body lines and signature line.
    note: Mapped[str] = mapped_column(Text)


class AuditNotification(Base):
    """Outbox of what a patient must be told, written in the audit entry's transaction.

    ``dedupe_key`` makes "the first time" events (a new professional reading the record)
    and bursts (an emergency session) notify once; the worker delivers each row once."""

    __tablename__ = "audit_notifications"
    __table_args__ = (
        UniqueConstraint("patient_id", "dedupe_key", name="uq_audit_notifications_dedupe"),
        Index(
            "ix_audit_notifications_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    patient_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    audit_entry_id: Mapped[int] = mapped_column(BigInteger)
    actor_role: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str | None] = mapped_column(String(128), default=None)
    # None: the patient. Otherwise the representation (entry id) whose holder is told.
    recipient: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    # An error class or HTTP status, never a response body.
    last_error: Mapped[str | None] = mapped_column(String(64), default=None)
