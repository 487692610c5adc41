"""``vault audit verify --since SIZE``: only what was added after a checkpoint an earlier
verification covered, with the same findings for the new part as the full verification,
and the one thing it leaves to the full one."""

from __future__ import annotations

from sqlalchemy import func, or_, select

from tests.audit.conftest import (
    activity,
    chain_entries,
    read_record,
    rebuild_tree,
    rehash_chain,
    tampering,
)
from vault.migrations import upgrade
from vault.models import AuditChainHead, AuditEntry
from vault.services import build_services
from vault.settings import Settings


def _verify_since(services, size, published=()):
    return services.audit_log.verifier.verify_since(services.session_factory, size, published)


def _added_since(services, size):
    with services.session_factory() as session:
        return session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(or_(AuditEntry.leaf_index >= size, AuditEntry.leaf_index.is_(None)))
        )


def _verified_then_more(client, tokens, make_checkpoint, verify):
    """A log verified up to a signed checkpoint, then a new patient's activity and a read
    that extends the first patient's chain, and a second checkpoint."""
    first_patient, first_ins = activity(client, tokens, 1)
    size = make_checkpoint()
    full = verify()
    assert full.ok, full.first_failure
    assert full.signed_size == size
    activity(client, tokens, 2)
    own = client.get(f"/fhir/Patient/{first_patient}", headers=tokens.patient(first_ins))
    assert own.status_code == 200
    return first_patient, first_ins, size


def test_what_was_added_since_a_verified_checkpoint_verifies_on_its_own(
    client, tokens, services, make_checkpoint, verify
):
    first_patient, _, size = _verified_then_more(client, tokens, make_checkpoint, verify)
    latest = make_checkpoint()

    report = _verify_since(services, size)

    assert report.ok, report.first_failure
    assert report.entries == _added_since(services, size)
    assert report.entries < verify().entries
    # The first patient's chain grew from an entry verified before: it is one of them.
    assert report.chains >= 2
    assert report.leaves == latest
    assert report.signed_size == latest
    assert chain_entries(services, first_patient)[-1].leaf_index >= size


def test_entries_not_yet_in_the_tree_are_checked_too(
    client, tokens, services, make_checkpoint, verify
):
    _, _, size = _verified_then_more(client, tokens, make_checkpoint, verify)

    report = _verify_since(services, size)

    assert report.ok, report.first_failure
    assert report.entries == _added_since(services, size) > 0
    assert report.leaves == size
    assert report.signed_size == size


def test_an_edited_new_entry_is_reported(client, tokens, services, make_checkpoint, verify):
    _, _, size = _verified_then_more(client, tokens, make_checkpoint, verify)
    make_checkpoint()
    with services.session_factory() as session:
        victim = session.scalar(
            select(AuditEntry).where(AuditEntry.leaf_index == size + 2).limit(1)
        )
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.update().where(AuditEntry.id == victim.id).values(action="Z")
        )

    failure = _verify_since(services, size).first_failure

    assert failure is not None
    assert failure.entry_id == victim.id
    assert "edited" in failure.reason


def test_a_new_entry_chained_onto_an_old_entry_rewritten_since_is_reported(
    client, tokens, services, make_checkpoint, verify
):
    first_patient, first_ins = activity(client, tokens, 1)
    size = make_checkpoint()
    assert verify().ok
    last_verified = chain_entries(services, first_patient)[-1]
    # Rewritten after the verification, rehashed so that its chain and head agree, and
    # then extended by the vault itself, which chains onto whatever the head says.
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == last_verified.id)
            .values(actor_id="810000000000")
        )
        rehash_chain(db, first_patient)
    client.get(f"/fhir/Patient/{first_patient}", headers=tokens.patient(first_ins))
    make_checkpoint()

    failure = _verify_since(services, size).first_failure

    assert failure is not None
    assert failure.entry_id == last_verified.id
    assert "rewritten after it was verified" in failure.reason


def test_a_deleted_entry_before_the_new_ones_is_reported(
    client, tokens, services, make_checkpoint, verify
):
    first_patient, _, size = _verified_then_more(client, tokens, make_checkpoint, verify)
    make_checkpoint()
    chain = chain_entries(services, first_patient)
    first_new = next(entry for entry in chain if entry.leaf_index >= size)
    before = chain[chain.index(first_new) - 1]
    with tampering(services) as db:
        db.execute(AuditEntry.__table__.delete().where(AuditEntry.id == before.id))

    failure = _verify_since(services, size).first_failure

    assert failure is not None
    assert failure.entry_id == first_new.id
    assert "missing" in failure.reason


def test_a_truncated_new_tail_is_reported(client, tokens, services, make_checkpoint, verify):
    first_patient, _, size = _verified_then_more(client, tokens, make_checkpoint, verify)
    chain = chain_entries(services, first_patient)
    assert chain[-1].leaf_index is None
    with tampering(services) as db:
        db.execute(AuditEntry.__table__.delete().where(AuditEntry.id == chain[-1].id))

    failure = _verify_since(services, size).first_failure

    assert failure is not None
    assert failure.entry_id == chain[-2].id
    assert "truncated" in failure.reason


def test_a_head_moved_back_on_a_chain_that_grew_is_reported(
    client, tokens, services, make_checkpoint, verify
):
    first_patient, _, size = _verified_then_more(client, tokens, make_checkpoint, verify)
    chain = chain_entries(services, first_patient)
    with tampering(services) as db:
        db.execute(
            AuditChainHead.__table__.update()
            .where(AuditChainHead.chain_key == first_patient)
            .values(last_seq=chain[-2].chain_seq, last_hash=chain[-2].entry_hash)
        )

    failure = _verify_since(services, size).first_failure

    assert failure is not None
    assert failure.entry_id == chain[-1].id
    assert "beyond" in failure.reason


def test_a_rewritten_history_with_its_tree_rebuilt_is_reported_at_the_checkpoint(
    client, tokens, services, make_checkpoint, verify
):
    first_patient, _, size = _verified_then_more(client, tokens, make_checkpoint, verify)
    make_checkpoint()
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == chain_entries(services, first_patient)[1].id)
            .values(actor_id="810000000000")
        )
        rehash_chain(db, first_patient)
        rebuild_tree(db)

    report = _verify_since(services, size)

    failure = report.first_failure
    assert failure is not None
    assert f"no longer give the root signed at tree size {size}" in failure.reason


def test_an_old_entry_no_new_entry_links_to_is_left_to_the_full_verification(
    client, tokens, services, make_checkpoint, verify
):
    """The documented limit: what was verified before is trusted, except where new
    entries build on it."""
    _, _, size = _verified_then_more(client, tokens, make_checkpoint, verify)
    make_checkpoint()
    with services.session_factory() as session:
        untouched = session.scalar(select(AuditEntry).where(AuditEntry.leaf_index == 1))
    verified_part = [
        entry
        for entry in chain_entries(services, untouched.chain_key)
        if entry.leaf_index is not None and entry.leaf_index < size
    ]
    # Not the entry its chain's new entries build on, which is checked again.
    assert untouched.id != verified_part[-1].id
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.update().where(AuditEntry.id == untouched.id).values(action="Z")
        )

    assert _verify_since(services, size).ok
    failure = verify().first_failure
    assert failure is not None
    assert failure.entry_id == untouched.id


def test_a_size_no_checkpoint_was_signed_at_is_refused(
    client, tokens, services, make_checkpoint, verify
):
    _, _, size = _verified_then_more(client, tokens, make_checkpoint, verify)

    failure = _verify_since(services, size - 1).first_failure

    assert failure is not None
    assert f"no checkpoint is signed at tree size {size - 1}" in failure.reason


def test_the_embedded_sqlite_store_verifies_since_a_checkpoint_too(tmp_path):
    url = f"sqlite:///{tmp_path}/vault.db"
    upgrade(url)
    services = build_services(
        Settings(database_url=url, data_dir=tmp_path, base_url="http://vault.test")
    )
    try:

        def append(patients: list[str]) -> None:
            with services.session_factory() as session, session.begin():
                for patient in patients:
                    services.audit.append(session, read_record(patient))

        append(["p1", "p2", "p1"])
        size = services.audit_log.checkpoints.make(services.session_factory).tree_size
        append(["p1", "p3", "p3"])
        latest = services.audit_log.checkpoints.make(services.session_factory).tree_size

        intact = _verify_since(services, size)
        assert intact.ok, intact.first_failure
        assert (intact.entries, intact.chains, intact.signed_size) == (3, 2, latest)

        with services.session_factory() as session, session.begin():
            session.execute(
                AuditEntry.__table__.update()
                .where(AuditEntry.leaf_index == size + 1)
                .values(action="Z")
            )
        failure = _verify_since(services, size).first_failure
        assert failure is not None
        assert failure.leaf_index == size + 1
        assert "edited" in failure.reason
    finally:
        services.engine.dispose()
