"""Full verification on PostgreSQL goes through fast passes, the chains split over worker
processes sharing one snapshot (vault/audit/scan.py, vault/audit/parallel.py). Whatever
the log holds, their report is the reference checks' report, field for field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, text

from tests.audit.conftest import activity, chain_entries, rebuild_tree, rehash_chain, tampering
from vault.access.chain import _instant
from vault.access.records import AuditRecord, Outcome
from vault.audit import parallel
from vault.audit.verify import AuditVerifier, Report
from vault.db import unit_of_work
from vault.identity.principal import Principal, Role
from vault.models import AuditChainHead, AuditCheckpoint, AuditEntry, AuditTreeHead
from vault.services import Services


class ReferenceVerifier(AuditVerifier):
    """The reference checks alone, as verification ran before the fast passes."""

    def _scan(self, session: Any, report: Report, roots: Any) -> tuple[bool, bool]:
        return False, False


@pytest.fixture(params=["in-process", "parallel"])
def fast(request: pytest.FixtureRequest, services: Services, monkeypatch: pytest.MonkeyPatch):
    """The verifier as ``vault audit verify`` builds it: in one process (the chains in a
    thread), or with two worker processes even for these small logs."""
    if request.param == "parallel":
        monkeypatch.setattr(parallel, "PARALLEL_FROM", 0)
    workers = 2 if request.param == "parallel" else 1
    log = services.audit_log
    return AuditVerifier(log.tree, log.checkpoints, workers=workers)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The worker processes started."""
    seen: list[Any] = []
    start = parallel._start

    def spy(job: dict[str, Any], keys: Any) -> Any:
        seen.append(keys)
        return start(job, keys)

    monkeypatch.setattr(parallel, "_start", spy)
    return seen


def _reference(services: Services) -> Report:
    log = services.audit_log
    return ReferenceVerifier(log.tree, log.checkpoints).verify(services.session_factory)


def _log(client, tokens, services: Services) -> str:
    """Three patients' chains, two checkpoints, entries outside the tree; returns the
    middle patient."""
    activity(client, tokens, 1)
    services.audit_log.checkpoints.make(services.session_factory)
    patient_id, _ = activity(client, tokens, 2)
    services.audit_log.checkpoints.make(services.session_factory)
    activity(client, tokens, 3, documents=1)
    return patient_id


def test_a_clean_log_is_verified_by_the_fast_passes_alone(
    client, tokens, services, fast, started, monkeypatch
):
    _log(client, tokens, services)
    expected = _reference(services)

    def reference_check(*_args: object) -> None:
        raise AssertionError("the reference checks ran on an intact log")

    for name in ("_check_chains", "_check_heads", "_check_tree"):
        monkeypatch.setattr(AuditVerifier, name, reference_check)
    report = fast.verify(services.session_factory)

    assert report.ok, report.first_failure
    assert report == expected
    assert report.entries > report.leaves > 0
    assert report.chains >= 3
    assert len(started) == (2 if fast.workers == 2 else 0)


def _edit(db, services, patient_id):
    victim = chain_entries(services, patient_id)[3]
    db.execute(AuditEntry.__table__.update().where(AuditEntry.id == victim.id).values(action="Z"))


def _delete(db, services, patient_id):
    victim = chain_entries(services, patient_id)[4]
    db.execute(AuditEntry.__table__.delete().where(AuditEntry.id == victim.id))


def _truncate(db, services, patient_id):
    tail = [entry.id for entry in chain_entries(services, patient_id)[-2:]]
    db.execute(AuditEntry.__table__.delete().where(AuditEntry.id.in_(tail)))


def _truncate_and_fix_up(db, services, patient_id):
    entries = chain_entries(services, patient_id)
    db.execute(AuditEntry.__table__.delete().where(AuditEntry.id == entries[-1].id))
    rehash_chain(db, patient_id)
    rebuild_tree(db)


def _rewrite_history(db, services, patient_id):
    victim = chain_entries(services, patient_id)[2]
    db.execute(
        AuditEntry.__table__.update()
        .where(AuditEntry.id == victim.id)
        .values(actor_id="810000000000")
    )
    rehash_chain(db, patient_id)
    rebuild_tree(db)


def _move_head_back(db, services, patient_id):
    entries = chain_entries(services, patient_id)
    db.execute(
        AuditChainHead.__table__.update()
        .where(AuditChainHead.chain_key == patient_id)
        .values(last_seq=entries[-2].chain_seq, last_hash=entries[-2].entry_hash)
    )


def _drop_head(db, services, patient_id):
    db.execute(AuditChainHead.__table__.delete().where(AuditChainHead.chain_key == patient_id))


def _orphan_head(db, services, patient_id):
    db.execute(
        AuditChainHead.__table__.insert().values(
            chain_key="no-such-patient", last_seq=1, last_hash=bytes(32)
        )
    )


def _move_to_other_chain(db, services, patient_id):
    victim = chain_entries(services, patient_id)[1]
    db.execute(
        AuditEntry.__table__.update().where(AuditEntry.id == victim.id).values(patient_id=None)
    )


def _swap_leaves(db, services, patient_id):
    first, second = chain_entries(services, patient_id)[1:3]
    for entry_id, leaf in ((first.id, -1), (second.id, first.leaf_index)):
        db.execute(
            AuditEntry.__table__.update().where(AuditEntry.id == entry_id).values(leaf_index=leaf)
        )
    db.execute(
        AuditEntry.__table__.update()
        .where(AuditEntry.id == first.id)
        .values(leaf_index=second.leaf_index)
    )


def _alter_node(db, services, patient_id):
    db.execute(
        text("UPDATE audit_tree_nodes SET hash = sha256(hash) WHERE level = 1 AND node_index = 2")
    )


def _delete_node(db, services, patient_id):
    db.execute(text("DELETE FROM audit_tree_nodes WHERE level = 2 AND node_index = 1"))


def _grow_tree_head(db, services, patient_id):
    db.execute(AuditTreeHead.__table__.update().values(size=AuditTreeHead.size + 5))


def _forge_checkpoint(db, services, patient_id):
    db.execute(
        AuditCheckpoint.__table__.update()
        .where(
            AuditCheckpoint.tree_size
            == select(func.min(AuditCheckpoint.tree_size)).scalar_subquery()
        )
        .values(root_hash=bytes(32))
    )


TAMPERING: list[Callable[..., None]] = [
    _edit,
    _delete,
    _truncate,
    _truncate_and_fix_up,
    _rewrite_history,
    _move_head_back,
    _drop_head,
    _orphan_head,
    _move_to_other_chain,
    _swap_leaves,
    _alter_node,
    _delete_node,
    _grow_tree_head,
    _forge_checkpoint,
]


@pytest.mark.parametrize("tamper", TAMPERING, ids=lambda tamper: tamper.__name__.strip("_"))
def test_tampering_fails_with_the_reference_report(client, tokens, services, fast, tamper):
    patient_id = _log(client, tokens, services)
    with tampering(services) as db:
        tamper(db, services, patient_id)

    report = fast.verify(services.session_factory)

    assert not report.ok
    assert report == _reference(services)


@pytest.mark.parametrize("mode", ["in-process", "parallel"])
def test_every_connection_reads_the_snapshot_of_the_run_not_what_is_committed_meanwhile(
    client, tokens, services, monkeypatch, mode
):
    patient_id = _log(client, tokens, services)
    before = _reference(services)
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 0)

    def after_writes(start: Callable[..., Any]) -> Callable[..., Any]:
        def started(*args: Any) -> Any:
            # Committed after the run's snapshot was taken, before the chains are read: to
            # them these must not exist, or the chains would not match their heads.
            for patient in (patient_id, "a-new-chain", None):
                _append(services, patient, "R")
            return start(*args)

        return started

    name = "_start" if mode == "parallel" else "run_job"
    monkeypatch.setattr(parallel, name, after_writes(getattr(parallel, name)))
    log = services.audit_log
    verifier = AuditVerifier(log.tree, log.checkpoints, workers=2 if mode == "parallel" else 1)
    report = verifier.verify(services.session_factory)

    assert report.ok, report.first_failure
    assert report == before
    assert _reference(services).entries == before.entries + (6 if mode == "parallel" else 3)


def test_chains_the_second_connection_cannot_check_are_checked_on_the_first(
    client, tokens, services, monkeypatch, caplog
):
    _log(client, tokens, services)
    expected = _reference(services)

    def refused(job: dict[str, Any]) -> Any:
        raise OSError("connection refused")

    monkeypatch.setattr(parallel, "run_job", refused)
    log = services.audit_log

    report = AuditVerifier(log.tree, log.checkpoints, workers=1).verify(services.session_factory)

    assert report == expected
    assert "second connection" in caplog.text


@pytest.mark.parametrize(
    ("executable", "warning"),
    [("/bin/false", "checking its range here"), ("/no/such/python", "checking here")],
    ids=["fails", "cannot-start"],
)
def test_a_worker_that_fails_has_its_chains_checked_by_the_coordinator(
    client, tokens, services, monkeypatch, caplog, executable, warning
):
    _log(client, tokens, services)
    expected = _reference(services)
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 0)
    monkeypatch.setattr(parallel.sys, "executable", executable)
    log = services.audit_log

    report = AuditVerifier(log.tree, log.checkpoints, workers=2).verify(services.session_factory)

    assert report == expected
    assert warning in caplog.text


NASTY = ['"', "\\", "\x01\x1f\x7f", "\u2028\u2029", "é\U0001f600", "</script>", "\\u0000", ""]


def _append(services: Services, patient_id: str | None, action: str, **detail: Any) -> None:
    principal = Principal(
        role=Role.PROFESSIONAL,
        subject=NASTY[0] + action,
        client_id=NASTY[2],
        token_id=NASTY[3],
        on_behalf_of=NASTY[4],
        source_ip=NASTY[6],
    )
    record = AuditRecord(
        action=action,
        outcome=Outcome.DENIED,
        purpose=NASTY[1],
        principal=principal,
        patient_id=patient_id,
        resource_type=NASTY[5],
        resource_id=NASTY[7],
        detail=detail,
    )
    with unit_of_work(services.session_factory) as session:
        services.audit.append(session, record)


def test_entries_holding_any_characters_verify_on_the_fast_path(services, fast, monkeypatch):
    for number, value in enumerate(NASTY):
        _append(services, value or None, value, reason=value, **{value: NASTY, "n": number})
        _append(services, f"patient-{value}", value, nested={"list": [value, None, 1.5]})
    services.audit_log.checkpoints.make(services.session_factory)

    def reference_check(*_args: object) -> None:
        raise AssertionError("the fast passes found the log broken")

    for name in ("_check_chains", "_check_heads", "_check_tree"):
        monkeypatch.setattr(AuditVerifier, name, reference_check)
    report = fast.verify(services.session_factory)

    assert report.ok
    assert report.entries == 2 * len(NASTY)


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 2, 30, 0, 1, tzinfo=timezone(timedelta(hours=2))),
        datetime(1, 1, 2, tzinfo=timezone(timedelta(hours=-5))),
        datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=timezone(timedelta(minutes=-90))),
    ],
)
def test_the_instant_the_fast_passes_read_is_the_one_the_reference_hashes(services, instant):
    with services.engine.connect() as connection:
        connection.execute(text("SET LOCAL TIME ZONE 'Europe/Paris'"))
        stored, utc = connection.execute(
            text("SELECT CAST(:at AS timestamptz), CAST(:at AS timestamptz) AT TIME ZONE 'UTC'"),
            {"at": instant},
        ).one()
    assert utc.isoformat("T", "microseconds") == _instant(stored) == _instant(instant)
