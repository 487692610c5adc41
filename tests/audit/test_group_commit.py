"""Group commit of reads' audit entries: the reads that arrive together share one
transaction; each read is released only once its own entry is committed; a group that
fails fails every read in it, and none of its entries is in the log; chains stay intact."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, func, insert, select, text

from tests.audit.test_atomicity import audit_writes_fail
from tests.factories import create_patient, publish
from vault.access.chain import GENESIS
from vault.access.group import WRITTEN, AuditUnavailable, Deferred, GroupCommit, Pending
from vault.access.permissions import Permission
from vault.access.records import AuditRecord, Outcome
from vault.db import make_engine, make_session_factory
from vault.identity.principal import Principal, Role
from vault.identity.scopes import parse_scopes
from vault.models import AuditChainHead, AuditEntry
from vault.services import Services

READER = Principal(role=Role.PROFESSIONAL, subject="810000000001")


def _read(patient_id: str, number: int) -> AuditRecord:
    return AuditRecord(
        action="R",
        outcome=Outcome.SUCCESS,
        purpose="TREAT",
        principal=READER,
        patient_id=patient_id,
        resource_type="Binary",
        resource_id=f"binary-{number}",
        detail={"permission": "document:content"},
    )


@pytest.fixture
def group(services: Services) -> GroupCommit:
    engine = make_engine(services.settings.effective_database_url, pool_size=1, max_overflow=0)
    committer = GroupCommit(services.audit, make_session_factory(engine), engine)
    yield committer
    committer.close()


def _entries(services: Services) -> int:
    with services.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def _until_a_backend_waits_for_a_lock(services: Services) -> None:
    """The first group has claimed its chain and waits: what comes now is the next group."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with services.engine.connect() as probe:
            waiting = probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting:
            return
        time.sleep(0.01)
    raise AssertionError("the first group never reached the locked chain")


def test_reads_arriving_while_a_group_commits_share_the_next_transaction(
    services: Services, group: GroupCommit
) -> None:
    patients = [f"patient-{n}" for n in range(4)]
    commits: list[int] = []
    engine = group._engine
    assert engine is not None
    event.listen(engine, "commit", lambda _connection: commits.append(1))
    # The first group's commit is held up: the chain of patient-0 is locked elsewhere.
    with services.engine.begin() as setup:
        setup.execute(
            insert(AuditChainHead).values(chain_key="patient-0", last_seq=0, last_hash=GENESIS)
        )
    with services.engine.connect() as other:
        other.execute(
            text("SELECT 1 FROM audit_chain_heads WHERE chain_key = 'patient-0' FOR UPDATE")
        )
        first = group.submit(_read("patient-0", 0))
        _until_a_backend_waits_for_a_lock(services)
        with ThreadPoolExecutor(12) as pool:
            waiting = list(
                pool.map(lambda n: group.submit(_read(patients[n % 4], n)), range(1, 13))
            )
        assert not first._future.done()  # type: ignore[union-attr]
        assert not any(pending._future.done() for pending in waiting)  # type: ignore[union-attr]
        other.rollback()

        first.wait()
        for pending in waiting:
            pending.wait()

    # One transaction for the first read, one for the twelve that came meanwhile.
    assert len(commits) == 2
    assert _entries(services) == 13
    report = services.audit_log.verifier.verify(services.session_factory)
    assert report.ok


def test_a_failed_group_fails_each_of_its_reads_and_leaves_none_of_their_entries(
    services: Services, group: GroupCommit
) -> None:
    before = _entries(services)
    with audit_writes_fail(services):
        with ThreadPoolExecutor(8) as pool:
            pendings = list(pool.map(lambda n: group.submit(_read(f"p-{n % 3}", n)), range(8)))
        failures = 0
        for pending in pendings:
            with pytest.raises(AuditUnavailable):
                pending.wait()
            failures += 1

    assert failures == 8
    assert _entries(services) == before
    # The committer is not broken by it: the next reads are recorded.
    group.submit(_read("p-0", 100)).wait()
    assert _entries(services) == before + 1


def test_a_read_whose_entry_was_written_in_its_own_transaction_does_not_wait() -> None:
    Pending().wait()


def test_concurrent_downloads_go_out_only_with_their_entries_and_keep_the_chain(
    client, tokens, services: Services
) -> None:
    patient_id, ins_value = create_patient(client, tokens, 7)
    stored = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 groupe")
    url = "/fhir/" + stored["content"][0]["attachment"]["url"]
    headers = tokens.patient(ins_value)
    before = _entries(services)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _n: client.get(url, headers=headers), range(24)))

    assert all(response.status_code == 200 for response in responses)
    assert all(response.content == b"%PDF-1.7 groupe" for response in responses)
    assert _entries(services) == before + 24
    assert services.audit_log.verifier.verify(services.session_factory).ok


def test_concurrent_downloads_while_the_log_refuses_entries_return_no_byte(
    client, tokens, services: Services
) -> None:
    patient_id, ins_value = create_patient(client, tokens, 8)
    stored = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 secret groupe")
    url = "/fhir/" + stored["content"][0]["attachment"]["url"]
    headers = tokens.patient(ins_value)
    barrier = threading.Barrier(8)

    def download(_n: int):
        barrier.wait()
        return client.get(url, headers=headers)

    with audit_writes_fail(services), ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(download, range(8)))

    for response in responses:
        assert response.status_code == 503
        assert response.json()["resourceType"] == "OperationOutcome"
        assert b"secret groupe" not in response.content


def test_a_read_in_a_transaction_that_already_wrote_to_the_log_is_recorded_there(
    services: Services, client, tokens
) -> None:
    """A page that records a document's read and then sends its content (the patient's
    space) holds the chain's head when it asks for the content's entry: handing that entry
    to the committer, which needs the same head, would leave both waiting."""
    assert services.access.group is not None, "group commit is on for PostgreSQL"
    patient_id, ins_value = create_patient(client, tokens)
    principal = Principal(role=Role.PATIENT, subject=ins_value, scopes=parse_scopes("patient/*.rs"))
    with services.session_factory() as session, session.begin():
        actor = services.access.actor(session, principal)
        services.audit.append(session, _read(patient_id, 1))
        recorded = services.access.authorize_read(
            session, actor, Permission.PATIENT_READ, patient_id, resource_type="Patient"
        )
        assert recorded is WRITTEN
    with services.session_factory() as session, session.begin():
        recorded = services.access.authorize_read(
            session, actor, Permission.PATIENT_READ, patient_id, resource_type="Patient"
        )
        assert isinstance(recorded, Deferred)
        recorded.wait()
    assert _entries(services) >= 3
