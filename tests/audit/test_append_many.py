"""Appending a group of entries at once (``AuditService.append_many``, the reads' committer's
append): the entries, chain links, logs and notifications are exactly those that appending
the records one by one in chain-key order writes; the group costs the same two statements
on PostgreSQL whatever its size; two processes' committers appending to the same chains
at once queue on their heads and never fork a chain."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.audit.conftest import read_record
from tests.audit.test_append import counted
from vault.access import journal
from vault.access.chain import GENESIS, NO_PATIENT_CHAIN
from vault.access.group import GroupCommit
from vault.access.journal import AuditService, chain_number, holds_chain
from vault.access.records import AuditRecord, Outcome, WrittenEntry
from vault.db import make_engine, make_session_factory, unit_of_work
from vault.identity.principal import Principal, Role
from vault.migrations import upgrade
from vault.models import AuditChainHead, AuditEntry, AuditNotification
from vault.observability.metrics import REGISTRY
from vault.services import Services

LOGS = 4
CAREGIVER = Principal(role=Role.CAREGIVER, subject="caregiver-1")
OTHER_READER = Principal(role=Role.PROFESSIONAL, subject="810000000009")


def _record(
    patient_id: str | None, principal: Principal, resource: str, purpose: str = "TREAT"
) -> AuditRecord:
    return AuditRecord(
        action="R",
        outcome=Outcome.SUCCESS,
        purpose=purpose,
        principal=principal,
        patient_id=patient_id,
        resource_type="Binary",
        resource_id=resource,
        detail={"permission": "document:content"},
    )


def _group() -> list[AuditRecord]:
    """Several reads of one patient (two professionals: one notification each, the first
    read of each kept), a caregiver's and an emergency read of another, a chain that has
    no head yet, entries that name no patient and a refusal, shuffled."""
    records = [
        read_record("patient-a", "document:content"),
        read_record("patient-a", "document:content"),
        _record("patient-a", OTHER_READER, "binary-1"),
        read_record("patient-a", "document:search"),
        _record("patient-b", CAREGIVER, "binary-2", purpose="SUPNWK"),
        _record("patient-b", OTHER_READER, "binary-3", purpose="ETREAT"),
        _record("patient-b", OTHER_READER, "binary-4"),
        read_record("patient-new"),
        read_record("patient-new", "document:search"),
        # What JSON escapes comes out of the database as it went in.
        AuditRecord(
            action="R",
            outcome=Outcome.SUCCESS,
            purpose="TREAT",
            principal=OTHER_READER,
            patient_id="patient-new",
            resource_type="Binary",
            resource_id='b-é"\\😀',
            detail={"permission": "document:content", "reason": "accès d\u2019urgence \u2028 😀"},
        ),
        read_record(None),
        read_record(None, "document:search"),
        AuditRecord(
            action="R",
            outcome=Outcome.DENIED,
            purpose="TREAT",
            principal=OTHER_READER,
            patient_id="patient-a",
            detail={"permission": "document:read", "reason": "no care relationship"},
        ),
    ]
    random.Random(15).shuffle(records)
    return records


class Clock:
    """The instants the appends read, the same for both ways of appending: the entries
    (and so their hashes) can then be compared whole."""

    def __init__(self) -> None:
        self._start = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
        self._ticks = 0

    def rewind(self) -> None:
        self._ticks = 0

    def __call__(self) -> datetime:
        self._ticks += 1
        return self._start + timedelta(microseconds=self._ticks * 1001)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    ticking = Clock()
    monkeypatch.setattr(journal, "utcnow", ticking)
    return ticking


def _chain_key(record: AuditRecord) -> str:
    return record.patient_id or NO_PATIENT_CHAIN


def _without_id(entry: WrittenEntry) -> dict[str, object]:
    values = asdict(entry)
    del values["id"]
    return values


def _notifications(services: Services, ids: dict[int, int]) -> list[tuple[object, ...]]:
    """The outbox rows, each naming its entry by its place in the group (``ids``)."""
    with services.session_factory() as session:
        return _outbox_in(session, ids)


def _heads(services: Services) -> dict[str, tuple[int, bytes, int]]:
    with services.session_factory() as session:
        return {
            head.chain_key: (head.last_seq, head.last_hash, head.log_id)
            for head in session.scalars(select(AuditChainHead))
        }


def _appends(outcome: str) -> float:
    return REGISTRY.get_sample_value("vault_audit_appends_total", {"outcome": outcome}) or 0.0


def test_a_group_writes_exactly_what_appending_its_records_one_by_one_writes(
    services: Services, clock: Clock, make_checkpoint, verify
) -> None:
    with unit_of_work(services.session_factory) as session:
        services.audit_log.tree.configure(session, LOGS)
    audit = services.audit
    # Chains with a past: patient-a's and patient-b's heads exist, patient-new's does not.
    with unit_of_work(services.session_factory) as session:
        for patient in ("patient-a", "patient-b", None, "patient-a"):
            audit.append(session, read_record(patient))
    records = _group()
    in_order = sorted(records, key=_chain_key)

    # One by one, in the chain keys' order: what the group must write. Then undone.
    clock.rewind()
    with services.session_factory() as session, session.begin():
        one_by_one = [audit.append(session, record) for record in in_order]
        expected_heads = _heads_in(session)
        session.flush()
        expected_notifications = _outbox_in(session, {e.id: n for n, e in enumerate(one_by_one)})
        session.rollback()

    clock.rewind()
    success, denied = _appends("success"), _appends("denied")
    with services.session_factory() as session, session.begin():
        grouped = audit.append_many(session, records)
        assert holds_chain(session)
    assert _appends("success") == success + 12
    assert _appends("denied") == denied + 1

    # The entries come back in the order of the records they record.
    assert [(e.chain_key, e.resource_id, e.detail) for e in grouped] == [
        (_chain_key(r), r.resource_id, r.detail) for r in records
    ]
    written = sorted(grouped, key=lambda entry: entry.id)
    assert [_without_id(entry) for entry in written] == [_without_id(entry) for entry in one_by_one]
    # The ids are drawn in the same order: ascending along the chain keys' order.
    assert [e.id - written[0].id for e in written] == [e.id - one_by_one[0].id for e in one_by_one]
    new_chain = [entry for entry in written if entry.chain_key == "patient-new"]
    assert [(e.chain_seq, e.prev_hash) for e in new_chain] == [
        (1, GENESIS),
        (2, new_chain[0].entry_hash),
        (3, new_chain[1].entry_hash),
    ]

    # Stored as returned, each in its chain's log; heads and notifications as one by one.
    with services.session_factory() as session:
        stored = {
            row.id: row
            for row in session.scalars(
                select(AuditEntry).where(AuditEntry.id.in_([e.id for e in written]))
            )
        }
    for entry in written:
        row = stored[entry.id]
        assert {name: getattr(row, name) for name in _without_id(entry)} == _without_id(entry)
        assert row.log_id == chain_number(entry.chain_key) % LOGS
    assert len({row.log_id for row in stored.values()}) > 1, "the group spans several logs"
    assert _heads(services) == expected_heads
    assert _notifications(services, {e.id: n for n, e in enumerate(written)}) == (
        expected_notifications
    )
    assert {kind for _n, _p, kind, *_rest in expected_notifications} == {
        "new-reader",
        "delegation-used",
        "emergency-access",
    }

    # Chains and trees verify, before and after a checkpoint takes the group in.
    assert verify().ok
    make_checkpoint()
    assert verify().ok


def _heads_in(session) -> dict[str, tuple[int, bytes, int]]:
    return {
        head.chain_key: (head.last_seq, head.last_hash, head.log_id)
        for head in session.scalars(
            select(AuditChainHead).execution_options(populate_existing=True)
        )
    }


def _outbox_in(session, ids: dict[int, int]) -> list[tuple[object, ...]]:
    rows = session.scalars(
        select(AuditNotification).where(AuditNotification.audit_entry_id.in_(ids))
    ).all()
    return sorted(
        (
            ids[row.audit_entry_id],
            row.patient_id,
            row.kind,
            row.dedupe_key,
            row.actor_role,
            row.actor_id,
            row.created_at,
            row.status,
        )
        for row in rows
    )


@pytest.mark.parametrize("size", [2, 50])
def test_a_group_costs_two_statements_whatever_its_size(services: Services, size: int) -> None:
    records = [
        _record(f"patient-{number % 7}", OTHER_READER, f"binary-{number}")
        if number % 3
        else read_record(None if number % 2 else f"patient-{number % 5}")
        for number in range(size)
    ]
    with (
        services.session_factory() as session,
        session.begin(),
        counted(services.engine) as statements,
    ):
        entries = services.audit.append_many(session, records)
    assert len(statements) == 2
    assert len({entry.id for entry in entries}) == size
    with services.session_factory() as session:
        notified = session.scalars(
            select(AuditNotification.audit_entry_id).where(
                AuditNotification.audit_entry_id.in_([e.id for e in entries])
            )
        ).all()
    assert notified, "the group's notifications are written in the same statement"


@pytest.fixture
def committers(services: Services) -> Iterator[list[GroupCommit]]:
    """Two committers, each with its own engine: two server processes' worth."""
    made = []
    for _ in range(2):
        engine = make_engine(services.settings.effective_database_url, pool_size=1, max_overflow=0)
        made.append(GroupCommit(AuditService(), make_session_factory(engine), engine))
    yield made
    for committer in made:
        committer.close()


def test_two_processes_committers_on_the_same_chains_neither_fork_nor_deadlock(
    services: Services, committers: list[GroupCommit]
) -> None:
    """Each committer stands for a server process: their groups hold the same patients (in
    every order, and a chain that neither has seen yet) and claim heads at the same time."""
    patients = [f"patient-{number}" for number in range(6)]
    reads = 240
    failures: list[BaseException] = []

    def reader(committer: GroupCommit, seed: int) -> None:
        chosen = random.Random(seed)
        try:
            for number in range(reads // 8):
                patient = chosen.choice([*patients, None])
                committer.submit(_record(patient, OTHER_READER, f"b-{seed}-{number}")).wait()
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [
        threading.Thread(target=reader, args=(committer, seed))
        for seed, committer in enumerate(committers * 4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []

    with services.session_factory() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert len(entries) == reads
    chains: dict[str, list[AuditEntry]] = {}
    for entry in entries:
        chains.setdefault(entry.chain_key, []).append(entry)
    for chain in chains.values():
        # Ids grow with the chain: each was drawn under the head's lock.
        assert [entry.chain_seq for entry in chain] == list(range(1, len(chain) + 1))
        assert [entry.prev_hash for entry in chain] == [
            GENESIS,
            *(entry.entry_hash for entry in chain[:-1]),
        ]
    assert services.audit_log.verifier.verify(services.session_factory).ok


def test_sqlite_appends_a_group_one_record_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/vault.db"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    audit = AuditService()
    records = _group()
    try:
        with factory() as session, session.begin():
            grouped = audit.append_many(session, records)
            assert holds_chain(session)
        with factory() as session:
            stored = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
            notifications = session.scalars(select(AuditNotification)).all()
    finally:
        engine.dispose()
    assert [(e.chain_key, e.resource_id) for e in grouped] == [
        (_chain_key(r), r.resource_id) for r in records
    ]
    # In the chain keys' order, each chain's records in the order given.
    assert [(row.chain_key, row.chain_seq) for row in stored] == [
        (_chain_key(r), 1 + [_chain_key(o) for o in records[:n]].count(_chain_key(r)))
        for n, r in sorted(enumerate(records), key=lambda item: _chain_key(item[1]))
    ]
    assert len(notifications) == 7
