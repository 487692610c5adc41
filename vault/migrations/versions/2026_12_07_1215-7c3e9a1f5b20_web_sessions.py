"""web sessions and visitors

The patient's space: server-side browser sessions (their data sealed under a key only the
browser's cookie holds) and each person's last visit, by a blind index.

Revision ID: 7c3e9a1f5b20
Revises: 5c1a7e2f9b34
Create Date: 2026-12-07 12:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c3e9a1f5b20"
down_revision: str | None = "5c1a7e2f9b34"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_web_sessions")),
    )
    op.create_index("ix_web_sessions_expires_at", "web_sessions", ["expires_at"], unique=False)
    op.create_table(
        "web_visitors",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("previous_visit_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_visit_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notifications_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_web_visitors")),
    )


def downgrade() -> None:
    op.drop_table("web_visitors")
    op.drop_index("ix_web_sessions_expires_at", table_name="web_sessions")
    op.drop_table("web_sessions")
