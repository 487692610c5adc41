from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, Integer, LargeBinary, String
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
