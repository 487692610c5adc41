"""The stored Merkle tree: built in commit order, its proofs are the RFC's, and
checkpoints sign what it holds."""

from __future__ import annotations

import base64

from sqlalchemy import func, select

from tests.audit.conftest import activity
from vault.access.records import AuditRecord, Outcome
from vault.audit import merkle
from vault.audit.checkpoints import open_checkpoint
from vault.audit.repository.tree import AuditTree
from vault.db import unit_of_work
from vault.models import AuditCheckpoint, AuditEntry, AuditTreeNode


def _leaf_hashes(services) -> list[bytes]:
    with services.session_factory() as session:
        rows = session.scalars(
            select(AuditEntry.entry_hash)
            .where(AuditEntry.leaf_index.is_not(None))
            .order_by(AuditEntry.leaf_index)
        )
        return [merkle.leaf_hash(bytes(digest)) for digest in rows]


def test_a_checkpoint_takes_in_every_entry_and_signs_the_rfc_root(client, tokens, services):
    activity(client, tokens, 1)

    row = services.audit_log.checkpoints.make(services.session_factory)

    assert row is not None
    with services.session_factory() as session:
        entries = session.scalar(select(func.count()).select_from(AuditEntry))
    leaves = _leaf_hashes(services)
    assert row.tree_size == entries == len(leaves)
    assert row.root_hash == merkle.root_of(leaves)
    checkpoints = services.audit_log.checkpoints
    signed = open_checkpoint(row.note, checkpoints.verifiers(), checkpoints.origin)
    assert (signed.tree_size, signed.root_hash) == (row.tree_size, row.root_hash)


def test_nothing_new_means_no_new_checkpoint(client, tokens, services):
    activity(client, tokens, 1)
    checkpoints = services.audit_log.checkpoints
    first = checkpoints.make(services.session_factory)
    again = checkpoints.make(services.session_factory)
    with services.session_factory() as session:
        count = session.scalar(select(func.count()).select_from(AuditCheckpoint))
    assert again is not None
    assert first is not None
    assert again.tree_size == first.tree_size
    assert count == 1


def test_an_empty_log_has_nothing_to_sign(services):
    assert services.audit_log.checkpoints.make(services.session_factory) is None


def test_stored_proofs_equal_the_proofs_over_the_leaves(client, tokens, services):
    activity(client, tokens, 1, documents=3)
    services.audit_log.checkpoints.make(services.session_factory)
    leaves = _leaf_hashes(services)
    tree = services.audit_log.tree
    memory = merkle.in_memory(leaves)
    size = len(leaves)
    with services.session_factory() as session:
        for index in range(size):
            assert tree.inclusion_proof(session, index, size) == merkle.inclusion_proof(
                index, size, memory
            )
        assert tree.inclusion_proofs(session, list(range(size)), size) == [
            merkle.inclusion_proof(index, size, memory) for index in range(size)
        ]
        for first in range(1, size + 1):
            assert tree.consistency_proof(session, first, size) == merkle.consistency_proof(
                first, size, memory
            )
        for smaller in range(size + 1):
            assert tree.root(session, smaller) == merkle.root_of(leaves[:smaller])


def test_extending_in_small_batches_stores_the_same_tree(client, tokens, services):
    activity(client, tokens, 1)
    tree = AuditTree()
    while True:
        with unit_of_work(services.session_factory) as session:
            if tree.extend(session, 3) == 0:
                break
    with services.session_factory() as session:
        nodes = {
            (level, index): bytes(digest)
            for level, index, digest in session.execute(
                select(AuditTreeNode.level, AuditTreeNode.node_index, AuditTreeNode.hash)
            )
        }
    leaves = _leaf_hashes(services)
    compact = merkle.CompactRange()
    expected = {}
    for leaf in leaves:
        for level, index, digest in compact.append(leaf):
            expected[(level, index)] = digest
    assert nodes == expected


def test_an_entry_still_uncommitted_joins_the_tree_after_it_commits(client, tokens, services):
    activity(client, tokens, 1)
    audit = services.audit
    late = services.session_factory()
    try:
        late.begin()
        entry = audit.append(
            late,
            AuditRecord(action="R", outcome=Outcome.SUCCESS, purpose="TREAT", principal=None),
        )
        # Meanwhile the checkpointer runs and only sees what is committed.
        first = services.audit_log.checkpoints.make(services.session_factory)
        late.commit()
    finally:
        late.close()
    assert first is not None
    second = services.audit_log.checkpoints.make(services.session_factory)
    with services.session_factory() as session:
        placed = session.get(AuditEntry, entry.id)
    assert placed is not None
    assert second is not None
    assert placed.leaf_index == first.tree_size
    assert second.tree_size == first.tree_size + 1
    assert services.audit_log.verifier.verify(services.session_factory).ok


def test_the_root_hash_in_the_note_is_base64_of_the_stored_root(client, tokens, services):
    activity(client, tokens, 1)
    row = services.audit_log.checkpoints.make(services.session_factory)
    assert row is not None
    assert base64.b64encode(row.root_hash).decode() in row.note.split("\n")
