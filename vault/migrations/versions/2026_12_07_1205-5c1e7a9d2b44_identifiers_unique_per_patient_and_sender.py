"""identifiers unique per patient and sender: a document's masterIdentifier and a
SubmissionSet's uniqueId no longer collide across patients or senders (issue 12, item 7)

A global unique key told a caller that another patient's document existed (409) and let
anyone claim a laboratory's predictable identifier first. Rows already stored stay valid:
what was unique globally is unique in any narrower scope.

Revision ID: 5c1e7a9d2b44
Revises: 3ffc31e7d521
Create Date: 2026-12-07 12:05:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5c1e7a9d2b44"
down_revision: str | None = "3ffc31e7d521"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch_alter_table: SQLite changes constraints by rebuilding the table.
    with op.batch_alter_table("documents") as batch:
        batch.drop_constraint("uq_documents_master_identifier", type_="unique")
        batch.create_unique_constraint(
            "uq_documents_patient_sender_master_identifier",
            ["patient_id", "author_kind", "author_id", "master_identifier"],
        )
    with op.batch_alter_table("submission_sets") as batch:
        batch.drop_constraint("uq_submission_sets_unique_id", type_="unique")
        batch.create_unique_constraint(
            "uq_submission_sets_patient_sender_unique_id",
            ["patient_id", "submitted_by_role", "submitted_by", "unique_id"],
        )


def downgrade() -> None:
    # Fails, as it must, once two patients or senders share an identifier.
    with op.batch_alter_table("submission_sets") as batch:
        batch.drop_constraint("uq_submission_sets_patient_sender_unique_id", type_="unique")
        batch.create_unique_constraint("uq_submission_sets_unique_id", ["unique_id"])
    with op.batch_alter_table("documents") as batch:
        batch.drop_constraint("uq_documents_patient_sender_master_identifier", type_="unique")
        batch.create_unique_constraint("uq_documents_master_identifier", ["master_identifier"])
