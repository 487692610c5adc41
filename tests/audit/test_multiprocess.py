"""Two ``vault serve`` processes against one PostgreSQL, many clients writing for the same
patients at once, each server signing checkpoints and delivering notifications meanwhile:
afterwards every chain and the tree verify."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.factories import DOCTOR, OTHER_DOCTOR, document_reference, ins, patient_resource
from vault.models import AuditCheckpoint, AuditEntry, AuditNotification

VAULT = str(Path(sys.executable).with_name("vault"))
PATIENTS = 3
WRITES = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vault serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail("vault serve did not come up")


@pytest.fixture
def servers(services, settings, tmp_path) -> Iterator[list[str]]:
    # Asking for ``services`` first makes the servers stop before its teardown empties the
    # tables: a server still running would race the next test.
    env = {
        **os.environ,
        "VAULT_DATABASE_URL": settings.database_url,
        "VAULT_DATA_DIR": str(settings.data_dir),
        "VAULT_BASE_URL": settings.base_url,
        "VAULT_BLOB_STORE": settings.blob_store,
        # Both processes checkpoint and deliver constantly, racing each other and the writers.
        "VAULT_AUDIT_CHECKPOINT_SECONDS": "0.2",
        "VAULT_NOTIFY_POLL_SECONDS": "0.2",
        "VAULT_LOG_LEVEL": "WARNING",
    }
    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for number in range(2):
            port = _free_port()
            log = tmp_path / f"server-{number}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    [VAULT, "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            started.append((process, f"http://127.0.0.1:{port}", log))
        for process, url, log in started:
            _wait_until_up(url, process, log)
        yield [url for _, url, _ in started]
    finally:
        for process, _, _ in started:
            process.terminate()
        for process, _, _ in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_two_servers_and_many_clients_leave_every_chain_and_the_tree_intact(
    servers, services, tokens
):
    first, second = servers
    patients = []
    with httpx.Client(timeout=30) as http:
        for seed in range(1, PATIENTS + 1):
            created = http.post(
                f"{first}/fhir/Patient",
                json=patient_resource(ins(seed)),
                headers=tokens.patient(ins(seed)),
            )
            assert created.status_code == 201, created.text
            patients.append((created.headers["Location"].split("/Patient/")[1].split("/")[0], seed))

    def write_and_read(number: int) -> None:
        patient_id, seed = patients[number % PATIENTS]
        writer, reader = (first, second) if number % 2 else (second, first)
        author = DOCTOR if number % 3 else OTHER_DOCTOR
        with httpx.Client(timeout=60) as http:
            published = http.post(
                f"{writer}/fhir/DocumentReference",
                json=document_reference(
                    {"reference": f"Patient/{patient_id}"}, f"report {number}".encode()
                ),
                headers=tokens.professional(author),
            )
            assert published.status_code == 201, published.text
            document = published.json()["id"]
            read = http.get(
                f"{reader}/fhir/DocumentReference/{document}", headers=tokens.patient(ins(seed))
            )
            assert read.status_code == 200, read.text
            history = http.get(
                f"{writer}/fhir/AuditEvent?patient={patient_id}&_count=5",
                headers=tokens.patient(ins(seed)),
            )
            assert history.status_code == 200, history.text

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(write_and_read, range(WRITES)))

    with services.session_factory() as session:
        signed_by_servers = session.scalar(select(func.count()).select_from(AuditCheckpoint))
    services.audit_log.checkpoints.make(services.session_factory)
    report = services.audit_log.verifier.verify(services.session_factory)

    assert report.ok, report.first_failure
    # Patient creation, and per write: create, read, history read.
    assert report.entries >= PATIENTS + 3 * WRITES
    assert report.leaves == report.entries
    assert report.chains >= PATIENTS
    assert signed_by_servers
    assert signed_by_servers >= 1
    for patient_id, _ in patients:
        assert services.audit_log.verifier.verify_patient(services.session_factory, patient_id).ok
    with services.session_factory() as session:
        statuses = set(session.scalars(select(AuditNotification.status)))
        per_chain = session.execute(
            select(AuditEntry.chain_key, func.count(), func.max(AuditEntry.chain_seq)).group_by(
                AuditEntry.chain_key
            )
        ).all()
    assert "dead" not in statuses
    assert all(count == last for _, count, last in per_chain)
