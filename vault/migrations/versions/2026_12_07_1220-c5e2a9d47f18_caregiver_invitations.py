"""caregiver invitations

A delegation offered by a one-time code before anyone holds it; accepting it binds the
delegation to the accepting (issuer, subject) (docs/access.md, "Inviting a caregiver").

Revision ID: c5e2a9d47f18
Revises: b81d0c4e6a37
Create Date: 2026-12-07 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c5e2a9d47f18"
down_revision: str | None = "b81d0c4e6a37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "caregiver_invitations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("delegation_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("code_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_role", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=160), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delegation_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_caregiver_invitations_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_caregiver_invitations")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_caregiver_invitations_code_hash")),
    )
    op.create_index(
        op.f("ix_caregiver_invitations_patient_id"),
        "caregiver_invitations",
        ["patient_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_caregiver_invitations_patient_id"), table_name="caregiver_invitations")
    op.drop_table("caregiver_invitations")
