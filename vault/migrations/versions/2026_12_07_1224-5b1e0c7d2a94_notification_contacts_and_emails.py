"""notification contacts and emails

Where each patient wants to be told what happens to their record (the address sealed under
their key, confirmed by a link), and the e-mail outbox with its lease and Message-ID
(vault/notifications/).

Revision ID: 5b1e0c7d2a94
Revises: c5e2a9d47f18
Create Date: 2026-12-07 11:59:56.258691
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b1e0c7d2a94"
down_revision: str | None = "c5e2a9d47f18"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_emails",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("notification_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("contact_version", sa.Integer(), nullable=True),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("secret_dek", sa.LargeBinary(), nullable=True),
        sa.Column("kek_id", sa.String(length=64), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_emails")),
        sa.UniqueConstraint("notification_id", name="uq_notification_emails_notification_id"),
    )
    op.create_index(
        "ix_notification_emails_due",
        "notification_emails",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
        sqlite_where=sa.text("status IN ('pending', 'sending')"),
    )
    op.create_index(
        op.f("ix_notification_emails_patient_id"),
        "notification_emails",
        ["patient_id"],
        unique=False,
    )
    op.create_index(
        "ix_notification_emails_status", "notification_emails", ["status", "id"], unique=False
    )
    op.create_table(
        "notification_contacts",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("address_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("address_dek", sa.LargeBinary(), nullable=True),
        sa.Column("kek_id", sa.String(length=64), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirm_token_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("confirm_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("events", sa.String(length=512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_notification_contacts_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_notification_contacts")),
    )
    op.create_index(
        "ix_notification_contacts_confirm",
        "notification_contacts",
        ["confirm_token_hash"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_notification_contacts_confirm", table_name="notification_contacts")
    op.drop_table("notification_contacts")
    op.drop_index("ix_notification_emails_status", table_name="notification_emails")
    op.drop_index(op.f("ix_notification_emails_patient_id"), table_name="notification_emails")
    op.drop_index(
        "ix_notification_emails_due",
        table_name="notification_emails",
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
        sqlite_where=sa.text("status IN ('pending', 'sending')"),
    )
    op.drop_table("notification_emails")
