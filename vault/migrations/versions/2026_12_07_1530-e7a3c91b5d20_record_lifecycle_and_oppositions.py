"""record lifecycle and oppositions

Closing, deleting and reopening a record, and oppositions to the creation of one
(vault/records/, docs/lifecycle.md).

Revision ID: e7a3c91b5d20
Revises: 8d2f4a6c1e37
Create Date: 2026-12-07 15:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e7a3c91b5d20"
down_revision: str | None = "8d2f4a6c1e37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "record_lifecycles",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retention_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deletion_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deletion_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reopened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_record_lifecycles_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_record_lifecycles")),
    )
    op.create_index(
        "ix_record_lifecycles_due",
        "record_lifecycles",
        ["status", "deletion_due_at"],
        unique=False,
    )
    op.create_table(
        "record_oppositions",
        sa.Column("ins_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ins_index", name=op.f("pk_record_oppositions")),
    )


def downgrade() -> None:
    op.drop_table("record_oppositions")
    op.drop_index("ix_record_lifecycles_due", table_name="record_lifecycles")
    op.drop_table("record_lifecycles")
