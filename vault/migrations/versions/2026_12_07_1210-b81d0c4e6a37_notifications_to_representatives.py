"""notifications to representatives

An outbox row may be addressed to a legal representative rather than the patient: the
registration of a new representative is announced to every existing one
(docs/access.md, "Parents of minors, and legal representatives of adults").

Revision ID: b81d0c4e6a37
Revises: a7c31e5b90d2
Create Date: 2026-12-07 12:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b81d0c4e6a37"
down_revision: str | None = "a7c31e5b90d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_notifications") as batch:
        batch.add_column(sa.Column("recipient", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_notifications") as batch:
        batch.drop_column("recipient")
