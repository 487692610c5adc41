"""record exports

Exports of a whole record: the job, its progress and the wrapped key of its archive
(vault/exports/).

Revision ID: 8d2f4a6c1e37
Revises: 5b1e0c7d2a94
Create Date: 2026-12-07 12:24:21.997046
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8d2f4a6c1e37"
down_revision: str | None = "5b1e0c7d2a94"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "record_exports",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("requester_role", sa.String(length=32), nullable=False),
        sa.Column("requester_kind", sa.String(length=32), nullable=False),
        sa.Column("requester_id", sa.String(length=128), nullable=False),
        sa.Column("requester_record", sa.String(length=64), nullable=True),
        sa.Column("requester_scopes", sa.String(length=1024), nullable=False),
        sa.Column("requester_issuer", sa.String(length=512), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.SmallInteger(), nullable=False),
        sa.Column("documents", sa.BigInteger(), nullable=False),
        sa.Column("archive_size", sa.BigInteger(), nullable=True),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=True),
        sa.Column("kek_id", sa.String(length=64), nullable=True),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_record_exports_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_record_exports")),
    )
    op.create_index(
        "ix_record_exports_patient_requested",
        "record_exports",
        ["patient_id", "requested_at"],
        unique=False,
    )
    op.create_index(
        "ix_record_exports_status", "record_exports", ["status", "lease_until"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_record_exports_status", table_name="record_exports")
    op.drop_index("ix_record_exports_patient_requested", table_name="record_exports")
    op.drop_table("record_exports")
