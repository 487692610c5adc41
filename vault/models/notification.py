from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from vault.models.base import Base, utcnow


class NotificationContact(Base):
    """Where a patient wants to be told what happens to their record, and about what.

    The address is personal data: sealed under the patient's key like every other record
    (``vault/storage/envelope.py``), never in clear. It is looked up by patient only, so it
    needs no blind index. ``version`` changes with the address, so links sent for an older
    address (confirmation, unsubscribe) stop working."""

    __tablename__ = "notification_contacts"
    __table_args__ = (Index("ix_notification_contacts_confirm", "confirm_token_hash"),)

    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, default=1)
    address_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    address_dek: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    kek_id: Mapped[str | None] = mapped_column(String(64), default=None)
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    # SHA-256 of the confirmation token: the token itself travels only in the e-mail.
    confirm_token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), default=None)
    confirm_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # The event kinds wanted, space-delimited on both sides (" new-document new-reader ").
    events: Mapped[str] = mapped_column(String(512), default=" ")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class NotificationEmail(Base):
    """One e-mail to send, and where its sending stands.

    ``pending`` -> ``sending`` (claimed with a lease, its Message-ID fixed before the SMTP
    conversation) -> ``sent``; a failure goes back to ``pending`` with a later
    ``next_attempt_at``, or to ``dead`` (the dead letters an operator replays). A worker
    that dies while ``sending`` leaves the lease to run out; the next claim sends again
    with the same Message-ID. ``skipped``: nothing to send any more (the patient opted out
    or removed the address)."""

    __tablename__ = "notification_emails"
    __table_args__ = (
        UniqueConstraint("notification_id", name="uq_notification_emails_notification_id"),
        Index(
            "ix_notification_emails_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'sending')"),
            sqlite_where=text("status IN ('pending', 'sending')"),
        ),
        Index("ix_notification_emails_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    # The outbox row this e-mail tells of; NULL for an address confirmation.
    notification_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    # For a confirmation: the contact version it confirms, and its token sealed under the
    # patient's key until it is sent (then erased).
    contact_version: Mapped[int | None] = mapped_column(Integer, default=None)
    secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    secret_dek: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    kek_id: Mapped[str | None] = mapped_column(String(64), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    # An error class or SMTP reply code, never a reply text (it may quote the address).
    last_error: Mapped[str | None] = mapped_column(String(64), default=None)
