"""Helpers for the audit tests: real activity through the API, and an attacker's hands on
the database (the append-only triggers switched off, as a database owner could)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, select, text

from tests.factories import OTHER_DOCTOR, create_patient, publish
from vault.access.chain import GENESIS, HASHED_COLUMNS, canonical_fields, entry_hash
from vault.access.records import AuditRecord, Outcome
from vault.audit import merkle
from vault.identity.principal import Principal, Role
from vault.models import AuditChainHead, AuditEntry, AuditTreeHead, AuditTreeNode
from vault.services import Services

# What an entry's hash covers, as the vault defines it once.
ENTRY_COLUMNS = HASHED_COLUMNS


def activity(client: Any, tokens: Any, seed: int, documents: int = 2) -> tuple[str, str]:
    """A patient opens a record, a doctor feeds it, the patient reads and searches it, and
    a stranger is refused: allowed and refused entries in the patient's chain."""
    patient_id, ins_value = create_patient(client, tokens, seed)
    patient = tokens.patient(ins_value)
    for number in range(documents):
        stored = publish(client, tokens.professional(), patient_id, f"report {number}".encode())
        assert (
            client.get(f"/fhir/DocumentReference/{stored['id']}", headers=patient).status_code
            == 200
        )
    assert (
        client.get(f"/fhir/DocumentReference?patient={patient_id}", headers=patient).status_code
        == 200
    )
    refused = client.get(
        f"/fhir/DocumentReference/{stored['id']}", headers=tokens.professional(OTHER_DOCTOR)
    )
    assert refused.status_code == 404
    return patient_id, ins_value


@pytest.fixture
def make_checkpoint(services: Services):
    def make() -> int:
        row = services.audit_log.checkpoints.make(services.session_factory)
        assert row is not None
        return row.tree_size

    return make


@pytest.fixture
def verify(services: Services):
    def run(published: tuple[str, ...] = ()):
        return services.audit_log.verifier.verify(services.session_factory, published)

    return run


@contextmanager
def tampering(services: Services) -> Iterator[Connection]:
    """A connection that may rewrite the log, as its database owner could."""
    with services.engine.begin() as connection:
        connection.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
        connection.execute(text("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"))
        yield connection
        connection.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER USER"))
        connection.execute(text("ALTER TABLE audit_checkpoints ENABLE TRIGGER USER"))


READER = Principal(
    role=Role.PROFESSIONAL, subject="810003456789", token_id="t-1", source_ip="127.0.0.1"
)


def read_record(patient_id: str | None, permission: str = "document:read") -> AuditRecord:
    """A professional's allowed read of a document, as the access module records it."""
    return AuditRecord(
        action="R",
        outcome=Outcome.SUCCESS,
        purpose="TREAT",
        principal=READER,
        patient_id=patient_id,
        resource_type="DocumentReference",
        resource_id="doc-1",
        detail={"permission": permission, "reason": "care relationship"},
    )


def chain_entries(services: Services, chain_key: str) -> list[AuditEntry]:
    """A chain's entries as the vault stored them, in order."""
    with services.session_factory() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.chain_key == chain_key)
                .order_by(AuditEntry.chain_seq)
            )
        )


def chain_of(connection: Connection, chain_key: str) -> list[Any]:
    return list(
        connection.execute(
            select(AuditEntry.__table__)
            .where(AuditEntry.chain_key == chain_key)
            .order_by(AuditEntry.chain_seq)
        )
    )


def rehash_chain(connection: Connection, chain_key: str) -> None:
    """Recompute every hash and link of a chain, and its head: what an attacker who edited
    entries does next so that the chain checks pass again."""
    previous = GENESIS
    for row in chain_of(connection, chain_key):
        fields = {name: getattr(row, name) for name in ENTRY_COLUMNS}
        digest = entry_hash(previous, canonical_fields(**fields))
        connection.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == row.id)
            .values(prev_hash=previous, entry_hash=digest)
        )
        previous = digest
        last_seq = row.chain_seq
    connection.execute(
        AuditChainHead.__table__.update()
        .where(AuditChainHead.chain_key == chain_key)
        .values(last_seq=last_seq, last_hash=previous)
    )


def rebuild_tree(connection: Connection) -> None:
    """Recompute every stored node and the tree head from the entries as they now are."""
    connection.execute(AuditTreeNode.__table__.delete())
    compact = merkle.CompactRange()
    rows = connection.execute(
        select(AuditEntry.entry_hash)
        .where(AuditEntry.leaf_index.is_not(None))
        .order_by(AuditEntry.leaf_index)
    )
    nodes = []
    for (digest,) in rows:
        for level, index, node in compact.append(merkle.leaf_hash(bytes(digest))):
            nodes.append({"level": level, "node_index": index, "hash": node})
    if nodes:
        connection.execute(AuditTreeNode.__table__.insert(), nodes)
    connection.execute(AuditTreeHead.__table__.update().values(size=compact.size))
