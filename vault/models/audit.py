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
    entries that name no patient) so writers for different patients do not contend.
    ``leaf_index`` is the entry's position in the global Merkle tree, assigned when a
    checkpoint takes it in (commit order, not id order, decides that).
    """

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_chain", "chain_key", "chain_seq", unique=True),
        Index("ix_audit_entries_patient_time", "patient_id", "id"),
        Index("ix_audit_entries_leaf", "leaf_index", unique=True),
        # What the checkpointer still has to take into the tree: a small, hot index.
        Index(
            "ix_audit_entries_unplaced",
            "id",
            postgresql_where=text("leaf_index IS NULL"),
            sqlite_where=text("leaf_index IS NULL"),
        ),
        Index("ix_audit_entries_occurred_at", "occurred_at"),
    )

    # SQLite only auto-increments a column declared exactly INTEGER.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    chain_key: Mapped[str] = mapped_column(String(64))
    chain_seq: Mapped[int] = mapped_column(BigInteger)
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
    leaf_index: Mapped[int | None] = mapped_column(BigInteger, default=None)


class AuditChainHead(Base):
    """The last link of each chain; its row lock serialises appends to one chain."""

    __tablename__ = "audit_chain_heads"

    chain_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditTreeHead(Base):
    """How many entries the Merkle tree holds. A single row, whose lock makes one
    checkpointer at a time (across every server process) extend the tree."""

    __tablename__ = "audit_tree_head"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)


class AuditTreeNode(Base):
    """The hash of a complete subtree: the leaves from ``node_index * 2**level`` up to
    ``(node_index + 1) * 2**level`` (excluded).

    Stored so that proofs cost O(log n) lookups instead of rehashing the log; every node
    is recomputed from the entries by ``vault audit verify``, never trusted."""

    __tablename__ = "audit_tree_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    node_index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    """A signed tree head: the signed note is what outside parties keep and compare."""

    __tablename__ = "audit_checkpoints"

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
