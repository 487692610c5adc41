"""documents patient author index

A reader who may see only what they authored in a record (a professional without a care
relationship) pages through it on (patient_id, author_id, created_at, id), reading what
the page returns however long the record (docs/performance.md).

Revision ID: 5c1a7e2f9b34
Revises: 5c1e7a9d2b44
Create Date: 2026-12-07 12:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5c1a7e2f9b34"
down_revision: str | None = "5c1e7a9d2b44"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_documents_patient_author_created",
        "documents",
        ["patient_id", "author_id", "created_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_documents_patient_author_created", table_name="documents")
