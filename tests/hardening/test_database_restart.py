"""PostgreSQL stopped and started again under load, with the vault left running: meanwhile
every answer is a clean 503 OperationOutcome with Retry-After (never a 500, never a hang),
and afterwards the same vault process serves again and has lost nothing it acknowledged.

The test runs its own PostgreSQL cluster: stopping the machine's shared one would break
every other test database on it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.factories import Tokens, ins, patient_resource
from tests.hardening.load import Ledger, kind_of, writer
from tests.hardening.servers import BASE_URL, PrivateCluster, VaultServer, vault_env
from vault.identity.tokens import EmbeddedIssuer
from vault.migrations import upgrade

WRITERS = 3
READERS = 2
# Each request must be answered well within this: a hang fails the test.
CLIENT_TIMEOUT = 20
PROBES_WHILE_DOWN = 12


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    private = PrivateCluster()
    try:
        private.init()
        private.start()
        yield private
    finally:
        private.destroy()


def reader(
    base: str,
    tokens: Tokens,
    patients: list[tuple[str, str]],
    ledger: Ledger,
    stop: threading.Event,
) -> None:
    with httpx.Client(timeout=CLIENT_TIMEOUT) as http:
        number = 0
        while not stop.is_set():
            patient_id, ins_value = patients[number % len(patients)]
            number += 1
            try:
                response = http.get(
                    f"{base}/fhir/DocumentReference?patient={patient_id}&_count=5",
                    headers=tokens.patient(ins_value),
                )
            except httpx.TransportError:
                with ledger.lock:
                    ledger.transport_errors += 1
                continue
            ledger.record(response)


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_postgresql_restart_under_load_gives_clean_503s_then_the_same_vault_recovers(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    url = cluster.create_database("vault")
    upgrade(url)
    data_dir = tmp_path / "data"
    tokens = Tokens(EmbeddedIssuer(data_dir, BASE_URL, "vault"))
    server = VaultServer(vault_env(url, data_dir, "db:"), tmp_path / "server.log")
    ledger = Ledger()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        base = server.start()
        patients = []
        for seed in (1, 2):
            created = httpx.post(
                f"{base}/fhir/Patient",
                json=patient_resource(ins(seed)),
                headers=tokens.patient(ins(seed)),
                timeout=CLIENT_TIMEOUT,
            )
            assert created.status_code == 201, created.text
            patients.append(
                (created.headers["Location"].split("/Patient/")[1].split("/")[0], ins(seed))
            )
        patient_ids = [patient_id for patient_id, _ in patients]
        threads = [
            threading.Thread(
                target=writer,
                args=(lambda: base, tokens, patient_ids, ledger, stop),
                kwargs={"size": 8 * 1024, "seed": number},
            )
            for number in range(WRITERS)
        ] + [
            threading.Thread(target=reader, args=(base, tokens, patients, ledger, stop))
            for _ in range(READERS)
        ]
        for thread in threads:
            thread.start()
        assert wait_for(lambda: ledger.acknowledged_count() >= 10, 60), server.tail()

        cluster.stop("fast")
        before_outage = ledger.acknowledged_count()
        with httpx.Client(timeout=CLIENT_TIMEOUT) as http:
            for number in range(PROBES_WHILE_DOWN):
                patient_id, ins_value = patients[number % len(patients)]
                probe = http.get(
                    f"{base}/fhir/DocumentReference?patient={patient_id}",
                    headers=tokens.patient(ins_value),
                )
                assert probe.status_code == 503, probe.text
                assert kind_of(probe) == "OperationOutcome"
                assert probe.json()["issue"][0]["code"] == "transient"
                assert probe.headers["Retry-After"]
            assert http.get(f"{base}/readyz").status_code == 503
        during_outage = ledger.acknowledged_count()

        cluster.start()
        assert wait_for(lambda: ledger.acknowledged_count() >= during_outage + 10, 60), (
            server.tail()
        )
        stop.set()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT * 2)
            assert not thread.is_alive()

        assert server.process is not None
        assert server.process.poll() is None, "the vault was restarted or died"
        assert ledger.transport_errors == 0, "a request hung or the connection broke"
        assert set(ledger.statuses) <= {200, 201, 503}, sorted(set(ledger.statuses))
        assert {kind for _, kind in ledger.refusals} <= {"OperationOutcome"}, ledger.refusals
        assert during_outage - before_outage <= WRITERS, "documents acknowledged while down"
        with httpx.Client(timeout=CLIENT_TIMEOUT) as http:
            assert http.get(f"{base}/readyz").status_code == 200
            for acknowledged in ledger.acknowledged.values():
                content = http.get(
                    f"{base}/fhir/Binary/{acknowledged.binary_id}", headers=tokens.professional()
                )
                assert content.status_code == 200, content.text
                assert content.content == acknowledged.sent.content
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT * 2)
        server.stop()
