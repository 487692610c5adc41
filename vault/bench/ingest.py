"""Ingest over HTTP, and the raw PostgreSQL floor beside it.

Several clients, each a thread with its own HTTP connection, post 100 KB PDFs as a
professional's software would: ITI-105 (the document inline in a DocumentReference) and
ITI-65 (a transaction Bundle: SubmissionSet, DocumentReference, Binary). Each request is
the full path: authentication, FHIR validation, encryption, blob, audit, commit.

The floor writes the same bytes straight to PostgreSQL with psycopg at the same
concurrency: one document row and one audit row per document, one transaction each,
committed as durably as the vault commits (synchronous_commit as the server has it).
"""

from __future__ import annotations

import hashlib
import http.client as http_client
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import psycopg

from vault.bench import repository
from vault.bench.stats import Latencies, cpu_seconds, machine_busy_seconds
from vault.bench.workload import Content, iti65_body, iti105_body
from vault.errors import VaultError

# Request kinds: what is posted, and how many documents it carries.
Kind = tuple[str, int]
ITI105: Kind = ("iti105", 1)


def iti65(documents: int) -> Kind:
    return ("iti65", documents)


@dataclass
class IngestResult:
    seconds: float
    documents: int
    requests: int
    latencies: dict[str, list[float]] = field(default_factory=dict)
    server_cpu_seconds: float = 0.0
    # This process's CPU time while its clients posted: the load generator's share.
    client_cpu_seconds: float = 0.0
    # The whole machine's busy CPU time meanwhile, whoever spent it.
    machine_cpu_seconds: float = 0.0
    errors: int = 0
    # The floor's own PostgreSQL backends (0 for a remote database).
    backend_cpu_seconds: float = 0.0

    @property
    def documents_per_s(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    def all_latencies(self) -> list[float]:
        return [value for values in self.latencies.values() for value in values]

    def summary(self, kind: str | None = None) -> Latencies:
        return Latencies.of(self.latencies.get(kind, []) if kind else self.all_latencies())

    @property
    def server_cpu_ms_per_document(self) -> float:
        return self._per_document(self.server_cpu_seconds)

    @property
    def client_cpu_ms_per_document(self) -> float:
        return self._per_document(self.client_cpu_seconds)

    @property
    def machine_cpu_ms_per_document(self) -> float:
        return self._per_document(self.machine_cpu_seconds)

    def _per_document(self, seconds: float) -> float:
        return 1000 * seconds / self.documents if self.documents else 0.0


class Ingest:
    def __init__(
        self,
        base_url: str,
        token: str,
        patient_ids: list[str],
        contents: list[Content],
        *,
        seed: int = 7,
    ) -> None:
        self.base_url = base_url
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/fhir+json",
        }
        self.patient_ids = patient_ids
        self.contents = contents
        self.seed = seed

    def body(self, kind: Kind, rng: random.Random) -> tuple[str, bytes]:
        patient_id = rng.choice(self.patient_ids)
        name, documents = kind
        if name == "iti105":
            return "/fhir/DocumentReference", iti105_body(patient_id, rng.choice(self.contents))
        chosen = [rng.choice(self.contents) for _ in range(documents)]
        return "/fhir", iti65_body(patient_id, chosen)

    def run(
        self,
        kinds: list[Kind],
        clients: int,
        seconds: float,
        *,
        max_requests: int | None = None,
        cpu: Callable[[], float] | None = None,
    ) -> IngestResult:
        """``clients`` threads post for ``seconds`` (or until ``max_requests``), each
        cycling through ``kinds``; a request that fails stops the run."""
        latencies: dict[str, list[float]] = {name: [] for name, _ in kinds}
        counted = {"documents": 0, "requests": 0}
        lock = threading.Lock()
        failures: list[str] = []
        deadline = time.monotonic() + seconds

        def client(number: int) -> None:
            rng = random.Random(self.seed * 1000 + number)  # noqa: S311 - reproducible workload
            turn = number
            http = _Connection(self.base_url, self.headers)
            try:
                while time.monotonic() < deadline and not failures:
                    with lock:
                        if max_requests is not None and counted["requests"] >= max_requests:
                            return
                        counted["requests"] += 1
                    kind = kinds[turn % len(kinds)]
                    turn += 1
                    path, body = self.body(kind, rng)
                    started = time.perf_counter()
                    try:
                        status, text = http.post(path, body)
                    except (OSError, http_client.HTTPException) as error:
                        failures.append(f"{path}: {type(error).__name__}")
                        return
                    elapsed = time.perf_counter() - started
                    if status not in (200, 201):
                        failures.append(f"{path}: HTTP {status} {text[:300]}")
                        return
                    with lock:
                        latencies[kind[0]].append(elapsed)
                        counted["documents"] += kind[1]
            finally:
                http.close()

        cpu_before = cpu() if cpu else 0.0
        client_before, machine_before = time.process_time(), machine_busy_seconds()
        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_before
        machine_cpu = machine_busy_seconds() - machine_before
        if failures:
            raise VaultError(f"ingest failed: {failures[0]}")
        done = sum(len(values) for values in latencies.values())
        return IngestResult(
            seconds=elapsed,
            documents=counted["documents"],
            requests=done,
            latencies=latencies,
            server_cpu_seconds=(cpu() - cpu_before) if cpu else 0.0,
            client_cpu_seconds=client_cpu,
            machine_cpu_seconds=machine_cpu,
        )


class _Connection:
    """One keep-alive connection, as a sender's software holds one. The standard library's
    client rather than httpx: the clients share the machine's two CPUs with the server and
    PostgreSQL, and httpx cost about 2 ms of CPU per 100 KB request, a fifth of what the
    server spends on it."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        where = urlsplit(base_url)
        self.connection = http_client.HTTPConnection(
            where.hostname or "127.0.0.1", where.port, timeout=120
        )
        self.headers = headers

    def post(self, path: str, body: bytes) -> tuple[int, str]:
        self.connection.request("POST", path, body=body, headers=self.headers)
        response = self.connection.getresponse()
        text = response.read().decode(errors="replace")
        return response.status, text

    def close(self) -> None:
        self.connection.close()


# -- the floor -------------------------------------------------------------------------------


class RawFloor:
    """The least any store of these documents must do: write the bytes and an audit row,
    durably, one transaction per document."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def prepare(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            repository.create_raw_schema(connection)

    def drop(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            repository.drop_raw_schema(connection)

    def run(
        self, patient_ids: list[str], contents: list[Content], clients: int, seconds: float
    ) -> IngestResult:
        latencies: list[float] = []
        backend_cpu: list[float] = []
        lock = threading.Lock()
        failures: list[str] = []
        deadline = time.monotonic() + seconds

        def client(number: int) -> None:
            rng = random.Random(number)  # noqa: S311 - reproducible workload
            try:
                with psycopg.connect(self.dsn) as connection:
                    # Read before the connection closes: an exited backend's CPU is lost.
                    backend = connection.info.backend_pid
                    begun = cpu_seconds(backend)
                    while time.monotonic() < deadline:
                        content = rng.choice(contents).data
                        document_id = _uuid(rng)
                        started = time.perf_counter()
                        repository.insert_raw_document(
                            connection,
                            document_id,
                            rng.choice(patient_ids),
                            content,
                            hashlib.sha256(document_id.encode()).digest(),
                        )
                        connection.commit()
                        elapsed = time.perf_counter() - started
                        with lock:
                            latencies.append(elapsed)
                    used = cpu_seconds(backend) - begun
                    with lock:
                        backend_cpu.append(used)
            except psycopg.Error as error:
                failures.append(type(error).__name__)

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        if failures:
            raise VaultError(f"raw floor failed: {failures[0]}")
        return IngestResult(
            elapsed,
            len(latencies),
            len(latencies),
            {"raw": latencies},
            backend_cpu_seconds=sum(backend_cpu),
        )


def _uuid(rng: random.Random) -> str:
    value = rng.getrandbits(128)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:]}"
