"""Appending to the log: what is written is what was hashed and returned, two writers of
one chain queue on its head, and the whole append costs two statements on PostgreSQL (one
statement for the entry, its chain head and its notification)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event, select

from tests.audit.conftest import ENTRY_COLUMNS, read_record
from tests.factories import create_patient
from vault.access.chain import GENESIS, NO_PATIENT_CHAIN, canonical_fields, entry_hash
from vault.access.journal import AuditService
from vault.access.records import WrittenEntry
from vault.db import make_engine, make_session_factory
from vault.migrations import upgrade
from vault.models import AuditChainHead, AuditEntry, AuditNotification


@contextmanager
def counted(engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _stored_as_written(stored: AuditEntry, written: WrittenEntry) -> None:
    for name in (*ENTRY_COLUMNS, "id", "prev_hash", "entry_hash"):
        value = getattr(stored, name)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # SQLite hands instants back naive, in UTC
        assert value == getattr(written, name), name
    fields = {name: getattr(stored, name) for name in ENTRY_COLUMNS}
    assert stored.entry_hash == entry_hash(stored.prev_hash, canonical_fields(**fields))


def test_an_append_stores_what_it_hashed_and_returned_and_moves_the_head(client, tokens, services):
    patient_id, _ = create_patient(client, tokens, 1)
    audit = services.audit
    with services.session_factory() as session, session.begin():
        first = audit.append(session, read_record(patient_id))
        second = audit.append(session, read_record(patient_id, "document:content"))
    with services.session_factory() as session:
        for written in (first, second):
            stored = session.get(AuditEntry, written.id)
            assert stored is not None
            _stored_as_written(stored, written)
        head = session.get(AuditChainHead, patient_id)
    assert second.chain_seq == first.chain_seq + 1
    assert second.prev_hash == first.entry_hash
    assert head is not None
    assert (head.last_seq, head.last_hash) == (second.chain_seq, second.entry_hash)


def test_an_append_is_two_statements_and_its_notification_comes_with_the_entry(
    client, tokens, services
):
    patient_id, _ = create_patient(client, tokens, 1)
    with (
        services.session_factory() as session,
        session.begin(),
        counted(services.engine) as statements,
    ):
        written = services.audit.append(session, read_record(patient_id))
    assert len(statements) == 2
    with services.session_factory() as session:
        (notification,) = session.scalars(
            select(AuditNotification).where(AuditNotification.audit_entry_id == written.id)
        )
    assert (notification.kind, notification.dedupe_key, notification.status) == (
        "new-reader",
        "reader:810003456789",
        "pending",
    )
    assert notification.created_at == written.occurred_at


def test_two_writers_of_one_chain_queue_on_its_head_and_never_fork_it(client, tokens, services):
    patient_id, _ = create_patient(client, tokens, 1)
    audit = services.audit
    first_session = services.session_factory()
    first_session.begin()
    first = audit.append(first_session, read_record(patient_id))
    results: list[WrittenEntry] = []

    def second_writer() -> None:
        with services.session_factory() as session, session.begin():
            results.append(audit.append(session, read_record(patient_id)))

    thread = threading.Thread(target=second_writer)
    thread.start()
    thread.join(timeout=0.5)
    # The second writer waits on the chain head's row lock while the first is open.
    assert thread.is_alive()
    assert results == []
    first_session.commit()
    first_session.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    (second,) = results
    assert second.chain_seq == first.chain_seq + 1
    assert second.prev_hash == first.entry_hash


def test_sqlite_appends_and_notifies_as_postgresql_does(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/vault.db"
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    audit = AuditService()
    try:
        with factory() as session, session.begin():
            first = audit.append(session, read_record("patient-1"))
            second = audit.append(session, read_record("patient-1", "document:content"))
            apart = audit.append(session, read_record(None))
        with factory() as session:
            for written in (first, second, apart):
                stored = session.get(AuditEntry, written.id)
                assert stored is not None
                _stored_as_written(stored, written)
            notifications = session.scalars(select(AuditNotification)).all()
            heads = {
                head.chain_key: (head.last_seq, head.last_hash)
                for head in session.scalars(select(AuditChainHead))
            }
    finally:
        engine.dispose()
    assert (first.chain_seq, first.prev_hash) == (1, GENESIS)
    assert (second.chain_seq, second.prev_hash) == (2, first.entry_hash)
    assert (apart.chain_key, apart.chain_seq) == (NO_PATIENT_CHAIN, 1)
    assert heads == {"patient-1": (2, second.entry_hash), NO_PATIENT_CHAIN: (1, apart.entry_hash)}
    # A professional's reads notify once: the second read found the first's notification.
    assert [(n.kind, n.audit_entry_id) for n in notifications] == [("new-reader", first.id)]
