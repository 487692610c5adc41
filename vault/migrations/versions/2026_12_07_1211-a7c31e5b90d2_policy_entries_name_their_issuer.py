"""policy entries name their issuer

Every access policy entry names an (issuer, subject) pair: a caregiver account is an
account at one issuer, and the same ``sub`` from another trusted issuer is another person.
Entries naming a national identifier (IDNPS, INS) keep no issuer: only the issuers trusted
for that namespace vouch for it (docs/access.md, "Who an entry names").

Entries made before this revision named a bare caregiver account. Which issuer vouched for
it was never recorded, so none can be inferred: they are bound to the issuer named by
``VAULT_LEGACY_CAREGIVER_ISSUER`` when the operator sets it (a deployment that only ever
had one issuer for caregivers), and otherwise to ``urn:vault:unbound``, which no token
carries: such a delegation or representation then matches nobody (fail closed), stays in
the patient's policy and history, and is granted again by the patient (or accepted again
through an invitation).

Revision ID: a7c31e5b90d2
Revises: 5c1a7e2f9b34
Create Date: 2026-12-07 12:00:00
"""

import os
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7c31e5b90d2"
down_revision: str | None = "5c1a7e2f9b34"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNBOUND_ISSUER = "urn:vault:unbound"


def upgrade() -> None:
    with op.batch_alter_table("access_policy_entries") as batch:
        batch.add_column(sa.Column("issuer", sa.String(length=255), nullable=True))
    legacy = os.environ.get("VAULT_LEGACY_CAREGIVER_ISSUER", "").strip() or UNBOUND_ISSUER
    entries = sa.table("access_policy_entries", sa.column("subject"), sa.column("issuer"))
    op.execute(
        entries.update()
        .where(entries.c.subject.like("caregiver:%"), entries.c.issuer.is_(None))
        .values(issuer=legacy)
    )


def downgrade() -> None:
    with op.batch_alter_table("access_policy_entries") as batch:
        batch.drop_column("issuer")
