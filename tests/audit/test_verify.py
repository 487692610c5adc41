"""``vault audit verify`` finds every kind of tampering, and names the first entry hit."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.audit.conftest import (
    ENTRY_COLUMNS,
    activity,
    chain_entries,
    chain_of,
    rebuild_tree,
    rehash_chain,
    tampering,
)
from vault.access.chain import canonical_fields, entry_hash
from vault.audit.checkpoints import Checkpoint, checkpoint_body
from vault.audit.signing import NoteSigner
from vault.models import AuditChainHead, AuditCheckpoint, AuditEntry, AuditTreeHead


def test_a_clean_log_verifies(client, tokens, make_checkpoint, verify):
    activity(client, tokens, 1)
    make_checkpoint()
    activity(client, tokens, 2)
    make_checkpoint()

    report = verify()

    assert report.ok, report.first_failure
    assert report.entries > 10
    assert report.leaves == report.entries
    assert report.chains >= 2
    assert report.checkpoints == 2


def test_entries_not_yet_in_a_checkpoint_still_verify(client, tokens, make_checkpoint, verify):
    activity(client, tokens, 1)
    make_checkpoint()
    activity(client, tokens, 2)

    report = verify()

    assert report.ok, report.first_failure
    assert report.leaves < report.entries


def test_an_edited_entry_is_reported(client, tokens, services, make_checkpoint, verify):
    patient_id, _ = activity(client, tokens, 1)
    make_checkpoint()
    victim = chain_entries(services, patient_id)[3]
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.update().where(AuditEntry.id == victim.id).values(action="Z")
        )

    failure = verify().first_failure

    assert failure is not None
    assert failure.entry_id == victim.id
    assert "edited" in failure.reason


def test_an_edited_entry_whose_own_hash_was_recomputed_is_reported(
    client, tokens, services, make_checkpoint, verify
):
    patient_id, _ = activity(client, tokens, 1)
    make_checkpoint()
    victim = chain_entries(services, patient_id)[2]
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.update().where(AuditEntry.id == victim.id).values(outcome="failed")
        )
        # Recompute this entry's hash only: its successor no longer links to it.
        row = chain_of(db, patient_id)[2]
        digest = entry_hash(
            bytes(row.prev_hash),
            canonical_fields(**{name: getattr(row, name) for name in ENTRY_COLUMNS}),
        )
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == victim.id)
            .values(entry_hash=digest)
        )

    failure = verify().first_failure

    assert failure is not None
    assert failure.entry_id == victim.id


def test_a_deleted_entry_is_reported_at_the_gap(client, tokens, services, make_checkpoint, verify):
    patient_id, _ = activity(client, tokens, 1)
    make_checkpoint()
    entries = chain_entries(services, patient_id)
    with tampering(services) as db:
        db.execute(AuditEntry.__table__.delete().where(AuditEntry.id == entries[4].id))

    failure = verify().first_failure

    assert failure is not None
    assert failure.entry_id == entries[5].id
    assert "missing" in failure.reason


def test_a_deleted_entry_with_its_chain_renumbered_is_caught_by_the_tree(
    client, tokens, services, make_checkpoint, verify
):
    patient_id, _ = activity(client, tokens, 1)
    make_checkpoint()
    entries = chain_entries(services, patient_id)
    with tampering(services) as db:
        db.execute(AuditEntry.__table__.delete().where(AuditEntry.id == entries[4].id))
        for row in entries[5:]:
            db.execute(
                AuditEntry.__table__.update()
                .where(AuditEntry.id == row.id)
                .values(chain_seq=row.chain_seq - 1)
            )
        rehash_chain(db, patient_id)

    failure = verify().first_failure

    assert failure is not None
    assert "missing" in failure.reason or "tree" in failure.reason


def test_reordered_entries_are_reported(client, tokens, services, make_checkpoint, verify):
    patient_id, _ = activity(client, tokens, 1)
    make_checkpoint()
    entries = chain_entries(services, patient_id)
    first, second = entries[3], entries[4]
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.update().where(AuditEntry.id == first.id).values(chain_seq=-1)
        )
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == second.id)
            .values(chain_seq=first.chain_seq)
        )
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == first.id)
            .values(chain_seq=second.chain_seq)
        )

    failure = verify().first_failure

    assert failure is not None
    assert failure.entry_id in (first.id, second.id)


def test_entries_swapped_in_the_tree_are_reported(
    client, tokens, services, make_checkpoint, verify
):
    patient_id, _ = activity(client, tokens, 1)
    make_checkpoint()
    entries = chain_entries(services, patient_id)
    first, second = entries[1], entries[2]
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.update().where(AuditEntry.id == first.id).values(leaf_index=-1)
        )
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == second.id)
            .values(leaf_index=first.leaf_index)
        )
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == first.id)
            .values(leaf_index=second.leaf_index)
        )

    failure = verify().first_failure

    assert failure is not None
    assert failure.leaf_index == min(first.leaf_index, second.leaf_index)


def test_a_truncated_tail_is_reported(client, tokens, services, make_checkpoint, verify):
    patient_id, _ = activity(client, tokens, 1)
    make_checkpoint()
    entries = chain_entries(services, patient_id)
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.delete().where(AuditEntry.id.in_([e.id for e in entries[-2:]]))
        )

    failure = verify().first_failure

    assert failure is not None
    assert failure.entry_id == entries[-3].id
    assert "truncated" in failure.reason


def test_a_truncated_tail_with_heads_fixed_up_is_caught_by_the_checkpoint(
    client, tokens, services, make_checkpoint, verify
):
    patient_id, _ = activity(client, tokens, 1)
    size = make_checkpoint()
    entries = chain_entries(services, patient_id)
    cut = [e for e in entries if e.leaf_index is not None and e.leaf_index >= size - 2]
    with tampering(services) as db:
        db.execute(AuditEntry.__table__.delete().where(AuditEntry.id.in_([e.id for e in cut])))
        rehash_chain(db, patient_id)
        rebuild_tree(db)

    failure = verify().first_failure

    assert failure is not None
    assert "truncated" in failure.reason
    assert failure.leaf_index == size - 2


def test_a_rewritten_and_rehashed_history_is_caught_by_the_signed_checkpoint(
    client, tokens, services, make_checkpoint, verify
):
    activity(client, tokens, 1)
    first_size = make_checkpoint()
    patient_id, _ = activity(client, tokens, 2)
    make_checkpoint()
    victim = chain_entries(services, patient_id)[2]
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == victim.id)
            .values(actor_id="810000000000")
        )
        rehash_chain(db, patient_id)
        rebuild_tree(db)

    report = verify()

    failure = report.first_failure
    assert failure is not None
    assert "rewritten" in failure.reason
    # Everything up to the last checkpoint that still matches is vouched for.
    assert failure.leaf_index == first_size
    assert all("chain" not in f.reason and "edited" not in f.reason for f in report.failures)


def test_a_forged_checkpoint_is_reported(client, tokens, services, make_checkpoint, verify):
    activity(client, tokens, 1)
    size = make_checkpoint()
    with tampering(services) as db:
        db.execute(
            AuditCheckpoint.__table__.update()
            .where(AuditCheckpoint.tree_size == size)
            .values(root_hash=bytes(32))
        )

    failure = verify().first_failure

    assert failure is not None
    assert f"checkpoint at tree size {size}" in failure.reason


def test_checkpoints_re_signed_with_another_key_are_refused(
    client, tokens, services, make_checkpoint, verify
):
    activity(client, tokens, 1)
    size = make_checkpoint()
    origin = services.audit_log.checkpoints.origin
    attacker = NoteSigner(origin, Ed25519PrivateKey.generate())
    with services.session_factory() as session:
        row = session.get(AuditCheckpoint, (0, size))
        assert row is not None
        body = checkpoint_body(Checkpoint(origin, size, row.root_hash, row.created_at))
    with tampering(services) as db:
        db.execute(
            AuditCheckpoint.__table__.update()
            .where(AuditCheckpoint.tree_size == size)
            .values(note=attacker.sign(body))
        )

    failure = verify().first_failure

    assert failure is not None
    assert "no valid signature" in failure.reason.lower()


def test_published_checkpoints_catch_a_rewrite_whose_checkpoints_were_deleted(
    client, tokens, services, make_checkpoint, verify
):
    patient_id, _ = activity(client, tokens, 1)
    size = make_checkpoint()
    with services.session_factory() as session:
        published = session.get(AuditCheckpoint, (0, size)).note
    victim = chain_entries(services, patient_id)[1]
    with tampering(services) as db:
        db.execute(AuditCheckpoint.__table__.delete())
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == victim.id)
            .values(purpose="HOPERAT")
        )
        rehash_chain(db, patient_id)
        rebuild_tree(db)

    assert verify().ok  # the database alone now tells a consistent story ...
    failure = verify((published,)).first_failure  # ... that an outside copy refutes.
    assert failure is not None
    assert "rewritten" in failure.reason


def test_a_chain_head_moved_back_is_reported(client, tokens, services, make_checkpoint, verify):
    patient_id, _ = activity(client, tokens, 1)
    make_checkpoint()
    entries = chain_entries(services, patient_id)
    with tampering(services) as db:
        db.execute(
            AuditChainHead.__table__.update()
            .where(AuditChainHead.chain_key == patient_id)
            .values(last_seq=entries[-2].chain_seq, last_hash=entries[-2].entry_hash)
        )

    failure = verify().first_failure

    assert failure is not None
    assert failure.entry_id == entries[-1].id


def test_a_tree_head_that_disagrees_with_the_leaves_is_reported(
    client, tokens, services, make_checkpoint, verify
):
    activity(client, tokens, 1)
    size = make_checkpoint()
    with tampering(services) as db:
        db.execute(AuditTreeHead.__table__.update().values(size=size + 5))

    failure = verify().first_failure

    assert failure is not None
    assert "tree head" in failure.reason


def test_one_patients_history_verifies_on_its_own(client, tokens, services, make_checkpoint):
    patient_id, _ = activity(client, tokens, 1)
    other_id, _ = activity(client, tokens, 2)
    make_checkpoint()
    verifier = services.audit_log.verifier
    assert verifier.verify_patient(services.session_factory, patient_id).ok

    victim = chain_entries(services, other_id)[1]
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == victim.id)
            .values(resource_id="another-document")
        )
        rehash_chain(db, other_id)

    assert verifier.verify_patient(services.session_factory, patient_id).ok
    failure = verifier.verify_patient(services.session_factory, other_id).first_failure
    assert failure is not None
    assert failure.entry_id == victim.id
    assert "not included" in failure.reason


def test_the_database_refuses_to_change_or_delete_audit_entries(client, tokens, services):
    activity(client, tokens, 1)
    services.audit_log.checkpoints.make(services.session_factory)
    for statement in (
        "UPDATE audit_entries SET action = 'R'",
        "UPDATE audit_entries SET leaf_index = leaf_index + 1000",
        "DELETE FROM audit_entries",
        "UPDATE audit_checkpoints SET tree_size = tree_size + 1",
        "DELETE FROM audit_checkpoints",
    ):
        with pytest.raises(DBAPIError, match="append-only"), services.engine.begin() as db:
            db.execute(text(statement))
