"""No byte of a read leaves for an audit entry that is then lost: concurrent downloads from
a real ``vault serve`` (reads' entries committed in groups, docs/audit.md) while
PostgreSQL crashes (immediate shutdown: no checkpoint, recovery from the WAL) and while the
vault itself is killed with SIGKILL. Afterwards, every download a client received whole
has its entry in the log, and ``vault audit verify`` passes.

The test runs its own PostgreSQL cluster: crashing the machine's shared one would break
every other test database on it."""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.factories import Tokens, document_reference, ins, patient_resource
from tests.hardening.servers import (
    BASE_URL,
    PrivateCluster,
    VaultServer,
    run_vault,
    vault_env,
)
from vault.db import make_engine
from vault.identity.tokens import EmbeddedIssuer
from vault.migrations import upgrade
from vault.models import AuditEntry

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]

READERS = 8
DOCUMENTS = 6
CLIENT_TIMEOUT = 20


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    private = PrivateCluster()
    try:
        private.init()
        private.start()
        yield private
    finally:
        private.destroy()


class Received:
    """Downloads that came back whole, by binary id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.whole: collections.Counter[str] = collections.Counter()
        self.refused = 0

    def total(self) -> int:
        with self.lock:
            return sum(self.whole.values())


def reader(
    server: VaultServer,
    headers: dict[str, str],
    contents: dict[str, bytes],
    received: Received,
    stop: threading.Event,
    seed: int,
) -> None:
    rng = random.Random(seed)
    with httpx.Client(timeout=CLIENT_TIMEOUT) as http:
        while not stop.is_set():
            binary_id = rng.choice(list(contents))
            try:
                response = http.get(f"{server.url}/fhir/Binary/{binary_id}", headers=headers)
            except httpx.TransportError:
                time.sleep(0.02)
                continue
            if response.status_code == 200 and response.content == contents[binary_id]:
                with received.lock:
                    received.whole[binary_id] += 1
            else:
                # Never the document's bytes, whatever else comes back.
                assert contents[binary_id] not in response.content
                with received.lock:
                    received.refused += 1


def _until(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the readers made no progress"
        time.sleep(0.05)


def test_every_download_received_has_its_entry_after_crashes_of_the_database_and_the_vault(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    url = cluster.create_database("vault")
    upgrade(url)
    data_dir = tmp_path / "data"
    tokens = Tokens(EmbeddedIssuer(data_dir, BASE_URL, "vault"))
    env = vault_env(url, data_dir, "db:")
    server = VaultServer(env, tmp_path / "server.log")
    received = Received()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        base = server.start()
        created = httpx.post(
            f"{base}/fhir/Patient",
            json=patient_resource(ins(5)),
            headers=tokens.patient(ins(5)),
            timeout=CLIENT_TIMEOUT,
        )
        assert created.status_code == 201, created.text
        patient_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]
        contents: dict[str, bytes] = {}
        for number in range(DOCUMENTS):
            content = f"%PDF-1.7 compte rendu {number} ".encode() + random.randbytes(2000)
            published = httpx.post(
                f"{base}/fhir/DocumentReference",
                json=document_reference({"reference": f"Patient/{patient_id}"}, content),
                headers=tokens.professional(),
                timeout=CLIENT_TIMEOUT,
            )
            assert published.status_code == 201, published.text
            binary = published.json()["content"][0]["attachment"]["url"].rpartition("/")[2]
            contents[binary] = content
        headers = tokens.patient(ins(5))
        threads = [
            threading.Thread(
                target=reader, args=(server, headers, contents, received, stop, number)
            )
            for number in range(READERS)
        ]
        for thread in threads:
            thread.start()
        _until(lambda: received.total() >= 50, 60)

        # PostgreSQL crashes with groups in flight, and comes back from its WAL.
        cluster.stop("immediate")
        time.sleep(0.3)
        cluster.start()
        progress = received.total()
        _until(lambda: received.total() >= progress + 50, 60)

        # The vault dies with reads waiting on their group.
        server.kill()
        server.start()
        progress = received.total()
        _until(lambda: received.total() >= progress + 50, 60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT * 2)
        server.stop()

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            entries = dict(
                connection.execute(
                    select(AuditEntry.resource_id, func.count())
                    .where(
                        AuditEntry.resource_type == "Binary",
                        AuditEntry.action == "R",
                        AuditEntry.outcome == "success",
                    )
                    .group_by(AuditEntry.resource_id)
                ).all()
            )
    finally:
        engine.dispose()
    assert received.total() >= 150
    for binary_id, downloads in received.whole.items():
        assert entries.get(binary_id, 0) >= downloads, binary_id
    verified = run_vault(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
