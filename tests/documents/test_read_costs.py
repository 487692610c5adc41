"""What the two hot reads cost the database: a patient's search reads its page and the
page's versions in one statement, without loading their own record again; a download reads
its binary with its document in one statement, and its ciphertext in the request's own
transaction, on the request's one connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import anyio.to_thread
import pytest
from sqlalchemy import event, insert, select

from tests.factories import create_patient, publish
from vault.models import StoredBlobChunk


@dataclass
class Costs:
    statements: list[str] = field(default_factory=list)
    checkouts: int = 0

    def touching(self, table: str) -> list[str]:
        return [statement for statement in self.statements if f" {table}" in statement]


@contextmanager
def counted(services) -> Iterator[Costs]:
    costs = Costs()

    def statement(_conn, _cursor, sql, *_args) -> None:
        costs.statements.append(" ".join(sql.split()))

    def checkout(*_args) -> None:
        costs.checkouts += 1

    event.listen(services.engine, "before_cursor_execute", statement)
    event.listen(services.engine, "checkout", checkout)
    try:
        yield costs
    finally:
        event.remove(services.engine, "before_cursor_execute", statement)
        event.remove(services.engine, "checkout", checkout)


def test_a_patients_search_reads_the_page_and_its_versions_in_one_statement(
    client, tokens, services
):
    patient_id, ins_value = create_patient(client, tokens)
    for index in range(3):
        publish(client, tokens.professional(), patient_id, f"report {index}".encode())

    with counted(services) as costs:
        response = client.get(
            f"/fhir/DocumentReference?patient=Patient/{patient_id}",
            headers=tokens.patient(ins_value),
        )

    assert response.status_code == 200
    assert len(response.json()["entry"]) == 3
    reads = costs.touching("documents") + costs.touching("document_versions")
    assert len(set(reads)) == 1
    assert "LEFT OUTER JOIN document_versions" in reads[0]
    # Their token already found their record: naming it in the search does not load it again.
    assert len(costs.touching("patients")) <= 1


def test_a_download_reads_its_binary_and_ciphertext_on_the_requests_one_connection(
    client, tokens, services
):
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 compte rendu")
    url = "/fhir/" + stored["content"][0]["attachment"]["url"]

    with counted(services) as costs:
        response = client.get(url, headers=tokens.patient(ins_value))

    assert response.status_code == 200
    assert response.content == b"%PDF-1.7 compte rendu"
    assert len(costs.touching("binaries")) == 1
    assert len(costs.touching("blob_chunks")) == 1
    assert costs.checkouts == 1


def test_the_database_blob_store_reads_inside_the_callers_transaction(services):
    key = "ab" * 16
    with services.session_factory() as session:
        session.execute(
            insert(StoredBlobChunk), [{"key": key, "chunk_index": 0, "data": b"not yet committed"}]
        )

        assert b"".join(services.blobs.read(key, session)) == b"not yet committed"
        session.rollback()


@contextmanager
def thread_hops(monkeypatch) -> Iterator[list[str]]:
    """The functions a request hands to the thread pool (each a hop there and back)."""
    hops: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(func, *args, **kwargs):
        # FastAPI hands a sync endpoint over wrapped in a partial that names it.
        named = func.keywords.get("function", func.func) if isinstance(func, partial) else func
        hops.append(getattr(named, "__qualname__", repr(named)))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    yield hops
    monkeypatch.setattr(anyio.to_thread, "run_sync", run_sync)


def test_a_patients_download_and_search_each_take_one_trip_to_the_thread_pool(
    client, tokens, monkeypatch
):
    # Their actor, their read and the end of their transaction run in the endpoint's
    # thread (docs/performance.md): no hop for the actor's query, none for the commit.
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 compte rendu")
    url = "/fhir/" + stored["content"][0]["attachment"]["url"]
    headers = tokens.patient(ins_value)

    with thread_hops(monkeypatch) as hops:
        downloaded = client.get(url, headers=headers)
    assert downloaded.status_code == 200
    assert downloaded.content == b"%PDF-1.7 compte rendu"
    # Answered before routing (vault.api.fhir.fast_binary): its unit of work is its one trip.
    assert hops == ["in_unit_of_work"]

    with thread_hops(monkeypatch) as hops:
        found = client.get(f"/fhir/DocumentReference?patient=Patient/{patient_id}", headers=headers)
    assert found.status_code == 200
    assert len(found.json()["entry"]) == 1
    assert hops == ["search"]


@pytest.mark.postgres_only
def test_a_download_runs_its_statements_outside_a_transaction_and_leaves_none_behind(
    client, tokens, services
):
    # Its entry is committed by the read committer, never in its own session: a BEGIN and
    # a COMMIT around its reads would be two round trips for nothing (docs/performance.md).
    patient_id, ins_value = create_patient(client, tokens)
    stored = publish(client, tokens.professional(), patient_id, b"%PDF-1.7 compte rendu")
    url = "/fhir/" + stored["content"][0]["attachment"]["url"]
    states: list[str] = []

    def state(conn, *_args) -> None:
        states.append(conn.connection.dbapi_connection.info.transaction_status.name)

    event.listen(services.engine, "after_cursor_execute", state)
    try:
        response = client.get(url, headers=tokens.patient(ins_value))
        assert response.status_code == 200
        assert response.content == b"%PDF-1.7 compte rendu"
        assert len(states) == 4
        assert set(states) == {"IDLE"}

        # The connection goes back to the pool in its usual mode: the next unit of work
        # on it has its transaction.
        states.clear()
        with services.session_factory() as session:
            session.execute(select(1))
            assert states == ["INTRANS"]
    finally:
        event.remove(services.engine, "after_cursor_execute", state)
