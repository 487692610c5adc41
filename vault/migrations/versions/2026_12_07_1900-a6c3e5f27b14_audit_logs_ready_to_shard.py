"""audit log ready to shard: entries and chain heads keyed by chain key, one Merkle tree
per audit log (tree head, nodes and checkpoints keyed by log id) (issue 17, item 4;
docs/scaling.md, docs/audit.md)

The log as it stands becomes log 0: every entry, chain, node and checkpoint keeps its
values, so every stored checkpoint still verifies. Ids do not change: the entries' primary
key becomes (chain_key, chain_seq), and the id keeps a plain index.

Revision ID: a6c3e5f27b14
Revises: f4b2d8e61a09
Create Date: 2026-12-07 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a6c3e5f27b14"
down_revision: str | None = "f4b2d8e61a09"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNPLACED = sa.text("leaf_index IS NULL")


def _add_log_id(table: str) -> None:
    # A default fills the rows already there without an UPDATE (the append-only triggers
    # refuse one on the entries); it goes once they are filled.
    with op.batch_alter_table(table) as batch:
        batch.add_column(
            sa.Column("log_id", sa.SmallInteger(), nullable=False, server_default=sa.text("0"))
        )
    with op.batch_alter_table(table) as batch:
        batch.alter_column("log_id", server_default=None)


def upgrade() -> None:
    op.drop_index("ix_audit_entries_leaf", table_name="audit_entries")
    op.drop_index(
        "ix_audit_entries_unplaced",
        table_name="audit_entries",
        postgresql_where=_UNPLACED,
        sqlite_where=_UNPLACED,
    )
    op.drop_index("ix_audit_entries_chain", table_name="audit_entries")
    _add_log_id("audit_entries")
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_constraint("pk_audit_entries", type_="primary")
        batch.create_primary_key("pk_audit_entries", ["chain_key", "chain_seq"])
    op.create_index("ix_audit_entries_id", "audit_entries", ["id"], unique=False)
    op.create_index("ix_audit_entries_leaf", "audit_entries", ["log_id", "leaf_index"])
    op.create_index(
        "ix_audit_entries_unplaced",
        "audit_entries",
        ["log_id", "id"],
        postgresql_where=_UNPLACED,
        sqlite_where=_UNPLACED,
    )

    _add_log_id("audit_chain_heads")

    with op.batch_alter_table("audit_tree_head") as batch:
        batch.alter_column("id", new_column_name="log_id")
    op.execute("UPDATE audit_tree_head SET log_id = 0")

    for table, columns in (
        ("audit_tree_nodes", ["log_id", "level", "node_index"]),
        ("audit_checkpoints", ["log_id", "tree_size"]),
    ):
        _add_log_id(table)
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", columns)


def downgrade() -> None:
    more = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM audit_tree_head WHERE log_id <> 0"))
        .scalar()
    )
    if more:
        raise RuntimeError(
            "this database has more than one audit log: the schema before a6c3e5f27b14 "
            "holds a single tree"
        )
    for table, columns in (
        ("audit_tree_nodes", ["level", "node_index"]),
        ("audit_checkpoints", ["tree_size"]),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", columns)
            batch.drop_column("log_id")

    op.execute("UPDATE audit_tree_head SET log_id = 1")
    with op.batch_alter_table("audit_tree_head") as batch:
        batch.alter_column("log_id", new_column_name="id")

    with op.batch_alter_table("audit_chain_heads") as batch:
        batch.drop_column("log_id")

    op.drop_index(
        "ix_audit_entries_unplaced",
        table_name="audit_entries",
        postgresql_where=_UNPLACED,
        sqlite_where=_UNPLACED,
    )
    op.drop_index("ix_audit_entries_leaf", table_name="audit_entries")
    op.drop_index("ix_audit_entries_id", table_name="audit_entries")
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_constraint("pk_audit_entries", type_="primary")
        batch.create_primary_key("pk_audit_entries", ["id"])
        batch.drop_column("log_id")
    op.create_index(
        "ix_audit_entries_chain", "audit_entries", ["chain_key", "chain_seq"], unique=True
    )
    op.create_index("ix_audit_entries_leaf", "audit_entries", ["leaf_index"], unique=True)
    op.create_index(
        "ix_audit_entries_unplaced",
        "audit_entries",
        ["id"],
        postgresql_where=_UNPLACED,
        sqlite_where=_UNPLACED,
    )
