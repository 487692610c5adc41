"""submission sets: the ITI-65 SubmissionSet Lists, encrypted, and the documents they list

Revision ID: 449de9858630
Revises: d718321f2202
Create Date: 2026-11-24 05:47:23.727026
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "449de9858630"
down_revision: str | None = "d718321f2202"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "submission_sets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("unique_id", sa.String(length=512), nullable=True),
        sa.Column("resource_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("resource_dek", sa.LargeBinary(), nullable=False),
        sa.Column("kek_id", sa.String(length=64), nullable=False),
        sa.Column("submitted_by_role", sa.String(length=32), nullable=False),
        sa.Column("submitted_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_submission_sets_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submission_sets")),
        sa.UniqueConstraint("unique_id", name=op.f("uq_submission_sets_unique_id")),
    )
    op.create_index(
        op.f("ix_submission_sets_patient_id"), "submission_sets", ["patient_id"], unique=False
    )
    op.create_table(
        "submission_set_members",
        sa.Column("submission_set_id", sa.String(length=64), nullable=False),
        sa.Column("document_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_submission_set_members_document_id_documents"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["submission_set_id"],
            ["submission_sets.id"],
            name=op.f("fk_submission_set_members_submission_set_id_submission_sets"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint(
            "submission_set_id", "document_id", name=op.f("pk_submission_set_members")
        ),
    )
    op.create_index(
        op.f("ix_submission_set_members_document_id"),
        "submission_set_members",
        ["document_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_submission_set_members_document_id"), table_name="submission_set_members"
    )
    op.drop_table("submission_set_members")
    op.drop_index(op.f("ix_submission_sets_patient_id"), table_name="submission_sets")
    op.drop_table("submission_sets")
