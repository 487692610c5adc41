"""access policies

Revision ID: ed49ec9fd81e
Revises: 449de9858630
Create Date: 2026-11-24 05:49:38.064856
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ed49ec9fd81e"
down_revision: str | None = "449de9858630"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_policies",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_access_policies_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_access_policies")),
    )
    op.create_table(
        "access_policy_entries",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=160), nullable=True),
        sa.Column("scope", sa.String(length=32), nullable=True),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version_added", sa.Integer(), nullable=False),
        sa.Column("version_ended", sa.Integer(), nullable=True),
        sa.Column("created_by_role", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=160), nullable=False),
        sa.Column("ended_by_role", sa.String(length=32), nullable=True),
        sa.Column("ended_by", sa.String(length=160), nullable=True),
        sa.Column("note_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("note_dek", sa.LargeBinary(), nullable=True),
        sa.Column("note_kek_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_access_policy_entries_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_policy_entries")),
    )
    op.create_index(
        "ix_access_policy_entries_patient_open",
        "access_policy_entries",
        ["patient_id", "ended_at"],
        unique=False,
    )
    op.create_index(
        "ix_access_policy_entries_subject_kind",
        "access_policy_entries",
        ["subject", "kind"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_access_policy_entries_subject_kind", table_name="access_policy_entries")
    op.drop_index("ix_access_policy_entries_patient_open", table_name="access_policy_entries")
    op.drop_table("access_policy_entries")
    op.drop_table("access_policies")
