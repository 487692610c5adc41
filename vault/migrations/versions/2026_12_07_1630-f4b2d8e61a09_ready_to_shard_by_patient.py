"""ready to shard by patient: patient-owned tables keyed by (patient_id, ...), composite
foreign keys, and reference tables for the lookups by an identifier unique across
patients (issue 17, item 4; docs/scaling.md)

Ids stay as they are; the reference tables are filled from the rows already stored.

Revision ID: f4b2d8e61a09
Revises: e7a3c91b5d20
Create Date: 2026-12-07 16:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f4b2d8e61a09"
down_revision: str | None = "e7a3c91b5d20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables whose single-column key "id" becomes (patient_id, id).
_KEYED_BY_ID = (
    "documents",
    "binaries",
    "submission_sets",
    "patient_keys",
    "access_policy_entries",
    "caregiver_invitations",
    "record_exports",
)


def upgrade() -> None:
    op.create_table(
        "patient_ins",
        sa.Column("ins_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("ins_index", name=op.f("pk_patient_ins")),
    )
    op.create_index("ix_patient_ins_patient_id", "patient_ins", ["patient_id"], unique=False)
    op.create_table(
        "resource_patients",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("kind", "resource_id", name=op.f("pk_resource_patients")),
    )
    op.create_table(
        "invitation_codes",
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("invitation_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_invitation_codes")),
    )
    op.execute("INSERT INTO patient_ins (ins_index, patient_id) SELECT ins_index, id FROM patients")
    for kind, table in (
        ("document", "documents"),
        ("binary", "binaries"),
        ("submission-set", "submission_sets"),
    ):
        # Constants above, no input: S608 does not apply.
        statement = f"INSERT INTO resource_patients (kind, resource_id, patient_id) SELECT '{kind}', id, patient_id FROM {table}"  # noqa: S608
        op.execute(statement)
    op.execute(
        "INSERT INTO invitation_codes (code_hash, patient_id, invitation_id) "
        "SELECT code_hash, patient_id, id FROM caregiver_invitations"
    )

    # A member names its patient, taken from its SubmissionSet.
    with op.batch_alter_table("submission_set_members") as batch:
        batch.add_column(sa.Column("patient_id", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE submission_set_members SET patient_id = (SELECT s.patient_id FROM "
        "submission_sets s WHERE s.id = submission_set_members.submission_set_id)"
    )

    # Foreign keys to keys about to change go first.
    with op.batch_alter_table("document_versions") as batch:
        batch.drop_constraint("fk_document_versions_binary_id_binaries", type_="foreignkey")
        batch.drop_constraint("fk_document_versions_document_id_documents", type_="foreignkey")
    with op.batch_alter_table("submission_set_members") as batch:
        batch.drop_constraint("fk_submission_set_members_document_id_documents", type_="foreignkey")
        batch.drop_constraint(
            "fk_submission_set_members_submission_set_id_submission_sets", type_="foreignkey"
        )

    for table in _KEYED_BY_ID:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", ["patient_id", "id"])
    with op.batch_alter_table("binaries") as batch:
        batch.drop_constraint("uq_binaries_blob_key", type_="unique")
        batch.create_unique_constraint("uq_binaries_patient_blob_key", ["patient_id", "blob_key"])
        batch.create_index("ix_binaries_blob_key", ["blob_key"], unique=False)
    with op.batch_alter_table("caregiver_invitations") as batch:
        batch.drop_constraint("uq_caregiver_invitations_code_hash", type_="unique")
    with op.batch_alter_table("patients") as batch:
        batch.drop_constraint("uq_patients_ins_index", type_="unique")

    with op.batch_alter_table("document_versions") as batch:
        batch.drop_constraint("pk_document_versions", type_="primary")
        batch.create_primary_key("pk_document_versions", ["patient_id", "document_id", "version"])
        batch.create_foreign_key(
            "fk_document_versions_document_documents",
            "documents",
            ["patient_id", "document_id"],
            ["patient_id", "id"],
            ondelete="RESTRICT",
        )
        batch.create_foreign_key(
            "fk_document_versions_binary_binaries",
            "binaries",
            ["patient_id", "binary_id"],
            ["patient_id", "id"],
            ondelete="RESTRICT",
        )
    with op.batch_alter_table("submission_set_members") as batch:
        batch.alter_column("patient_id", existing_type=sa.String(length=64), nullable=False)
        batch.drop_index("ix_submission_set_members_document_id")
        batch.drop_constraint("pk_submission_set_members", type_="primary")
        batch.create_primary_key(
            "pk_submission_set_members", ["patient_id", "submission_set_id", "document_id"]
        )
        batch.create_index(
            "ix_submission_set_members_patient_document", ["patient_id", "document_id"]
        )
        batch.create_foreign_key(
            "fk_submission_set_members_set_submission_sets",
            "submission_sets",
            ["patient_id", "submission_set_id"],
            ["patient_id", "id"],
            ondelete="RESTRICT",
        )
        batch.create_foreign_key(
            "fk_submission_set_members_document_documents",
            "documents",
            ["patient_id", "document_id"],
            ["patient_id", "id"],
            ondelete="RESTRICT",
        )


def downgrade() -> None:
    with op.batch_alter_table("submission_set_members") as batch:
        batch.drop_constraint("fk_submission_set_members_document_documents", type_="foreignkey")
        batch.drop_constraint("fk_submission_set_members_set_submission_sets", type_="foreignkey")
        batch.drop_index("ix_submission_set_members_patient_document")
        batch.drop_constraint("pk_submission_set_members", type_="primary")
        batch.create_primary_key("pk_submission_set_members", ["submission_set_id", "document_id"])
        batch.create_index("ix_submission_set_members_document_id", ["document_id"])
    with op.batch_alter_table("document_versions") as batch:
        batch.drop_constraint("fk_document_versions_binary_binaries", type_="foreignkey")
        batch.drop_constraint("fk_document_versions_document_documents", type_="foreignkey")
        batch.drop_constraint("pk_document_versions", type_="primary")
        batch.create_primary_key("pk_document_versions", ["document_id", "version"])

    with op.batch_alter_table("patients") as batch:
        batch.create_unique_constraint("uq_patients_ins_index", ["ins_index"])
    with op.batch_alter_table("caregiver_invitations") as batch:
        batch.create_unique_constraint("uq_caregiver_invitations_code_hash", ["code_hash"])
    with op.batch_alter_table("binaries") as batch:
        batch.drop_index("ix_binaries_blob_key")
        batch.drop_constraint("uq_binaries_patient_blob_key", type_="unique")
        batch.create_unique_constraint("uq_binaries_blob_key", ["blob_key"])
    for table in _KEYED_BY_ID:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", ["id"])

    with op.batch_alter_table("submission_set_members") as batch:
        batch.create_foreign_key(
            "fk_submission_set_members_submission_set_id_submission_sets",
            "submission_sets",
            ["submission_set_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch.create_foreign_key(
            "fk_submission_set_members_document_id_documents",
            "documents",
            ["document_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch.drop_column("patient_id")
    with op.batch_alter_table("document_versions") as batch:
        batch.create_foreign_key(
            "fk_document_versions_document_id_documents",
            "documents",
            ["document_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch.create_foreign_key(
            "fk_document_versions_binary_id_binaries",
            "binaries",
            ["binary_id"],
            ["id"],
            ondelete="RESTRICT",
        )

    op.drop_table("invitation_codes")
    op.drop_table("resource_patients")
    op.drop_index("ix_patient_ins_patient_id", table_name="patient_ins")
    op.drop_table("patient_ins")
