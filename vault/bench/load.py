"""Closed-loop load at the shapes patients have: many readers at once, each on its own
keep-alive connection, optionally beside writers; latencies per operation, and the CPU
time the server, PostgreSQL, the load generator and the whole machine spent per
operation.

The clients are the standard library's ``http.client``, as the ingest's are: they share
the machine's two CPUs with the server, and a thousand reads a second leave no room for a
heavier client.
"""

from __future__ import annotations

import hashlib
import http.client as http_client
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from vault.bench.stats import Latencies, machine_busy_seconds, postgres_cpu, postgres_cpu_since
from vault.errors import VaultError


@dataclass(frozen=True)
class Reader:
    """A patient whose reads are timed: their token, what their search must return at
    least, and the binaries to download with the SHA-1 of their bytes."""

    patient_id: str
    token: str
    expected_entries: int
    binary_ids: tuple[str, ...]
    sha1: str


class Connection:
    """One keep-alive connection."""

    def __init__(self, base_url: str) -> None:
        where = urlsplit(base_url)
        self.connection = http_client.HTTPConnection(
            where.hostname or "127.0.0.1", where.port, timeout=120
        )

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[int, bytes]:
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.connection.close()


# An operation: given a connection and the client's random source, do one request, check
# what came back (raising VaultError when it is wrong) and say how many documents it
# carried (for writes; 1 for reads).
Operation = Callable[[Connection, random.Random], int]


def search(readers: list[Reader]) -> Operation:
    def run(http: Connection, rng: random.Random) -> int:
        reader = rng.choice(readers)
        query = urlencode({"patient": f"Patient/{reader.patient_id}"})
        status, body = http.request(
            "GET", f"/fhir/DocumentReference?{query}", _bearer(reader.token)
        )
        if status != 200:
            raise VaultError(f"search: HTTP {status}")
        entries = len(json.loads(body).get("entry") or [])
        if entries < reader.expected_entries:
            raise VaultError(f"search found {entries} of {reader.expected_entries} documents")
        return 1

    return run


def download(readers: list[Reader]) -> Operation:
    def run(http: Connection, rng: random.Random) -> int:
        reader = rng.choice(readers)
        binary_id = rng.choice(reader.binary_ids)
        status, body = http.request("GET", f"/fhir/Binary/{binary_id}", _bearer(reader.token))
        if status != 200:
            raise VaultError(f"download: HTTP {status}")
        if hashlib.sha1(body, usedforsecurity=False).hexdigest() != reader.sha1:
            raise VaultError("download: the bytes differ from those stored")
        return 1

    return run


def post(path_and_body: Callable[[random.Random], tuple[str, bytes, int]], token: str) -> Operation:
    headers = {**_bearer(token), "Content-Type": "application/fhir+json"}

    def run(http: Connection, rng: random.Random) -> int:
        path, body, documents = path_and_body(rng)
        status, text = http.request("POST", path, headers, body)
        if status not in (200, 201):
            raise VaultError(f"{path}: HTTP {status} {text[:300]!r}")
        return documents

    return run


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Client:
    """A client's job: the operations it cycles through, each timed under its name."""

    operations: tuple[tuple[str, Operation], ...]


@dataclass
class LoadResult:
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    server_cpu_seconds: float = 0.0
    postgres_cpu_seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    machine_cpu_seconds: float = 0.0

    def count(self, *names: str) -> int:
        return sum(len(self.latencies.get(name, [])) for name in names)

    def per_s(self, *names: str) -> float:
        return self.count(*names) / self.seconds if self.seconds else 0.0

    def summary(self, *names: str) -> Latencies:
        return Latencies.of([value for name in names for value in self.latencies.get(name, [])])

    def cpu_ms_per_operation(self, *names: str) -> dict[str, float]:
        """CPU per operation of ``names`` (all of them when none is named)."""
        count = self.count(*names) if names else self.count(*self.latencies)
        if not count:
            return {}
        return {
            "server": round(1000 * self.server_cpu_seconds / count, 2),
            "postgres": round(1000 * self.postgres_cpu_seconds / count, 2),
            "client": round(1000 * self.client_cpu_seconds / count, 2),
            "machine": round(1000 * self.machine_cpu_seconds / count, 2),
        }


class _Loop:
    """What the clients of one run share: the counts, the latencies, the first failure."""

    def __init__(self, clients: list[Client], requests: int | None, warmup: int) -> None:
        self.latencies: dict[str, list[float]] = {}
        self.items: dict[str, int] = {}
        for client in clients:
            for name, _operation in client.operations:
                self.latencies.setdefault(name, [])
                self.items.setdefault(name, 0)
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.left = requests if requests is not None else -1
        self.warmup = warmup
        self.warmed = threading.Barrier(len(clients) + 1)
        self.deadline: float | None = None

    def _next(self) -> bool:
        if self.failures or (self.deadline is not None and time.monotonic() >= self.deadline):
            return False
        with self.lock:
            if self.left == 0:
                return False
            self.left -= 1
        return True

    def client(self, base_url: str, client: Client, rng: random.Random, turn: int) -> None:
        http = Connection(base_url)
        operations = client.operations
        try:
            try:
                for _ in range(self.warmup):
                    operations[turn % len(operations)][1](http, rng)
                    turn += 1
            finally:
                self.warmed.wait()
            while self._next():
                name, operation = operations[turn % len(operations)]
                turn += 1
                started = time.perf_counter()
                done = operation(http, rng)
                elapsed = time.perf_counter() - started
                with self.lock:
                    self.latencies[name].append(elapsed)
                    self.items[name] += done
        except (VaultError, OSError, http_client.HTTPException, ValueError) as error:
            self.failures.append(f"{type(error).__name__}: {error}")
        finally:
            http.close()


def run_load(
    base_url: str,
    clients: list[Client],
    *,
    seconds: float | None = None,
    requests: int | None = None,
    warmup: int = 0,
    server_cpu: Callable[[], float] | None = None,
    seed: int = 11,
) -> LoadResult:
    """Every client runs its operations in turn, on its own connection, until ``seconds``
    have passed or ``requests`` timed requests were made in all; each first makes
    ``warmup`` untimed requests. The first failure stops the run and is raised."""
    if seconds is None and requests is None:
        raise ValueError("say how long: seconds or requests")
    loop = _Loop(clients, requests, warmup)
    threads = [
        threading.Thread(
            target=loop.client,
            # A reproducible workload, not a secret.
            args=(base_url, client, random.Random(seed * 1000 + n), n),  # noqa: S311
            daemon=True,
        )
        for n, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    # The timed part starts when every client is warm, for everyone at once.
    loop.warmed.wait()
    server_before = server_cpu() if server_cpu else 0.0
    client_before, machine_before = time.process_time(), machine_busy_seconds()
    database_before = postgres_cpu()
    started = time.perf_counter()
    if seconds is not None:
        loop.deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    result = LoadResult(
        seconds=elapsed,
        latencies=loop.latencies,
        items=loop.items,
        server_cpu_seconds=(server_cpu() - server_before) if server_cpu else 0.0,
        postgres_cpu_seconds=postgres_cpu_since(database_before),
        client_cpu_seconds=time.process_time() - client_before,
        machine_cpu_seconds=machine_busy_seconds() - machine_before,
    )
    if loop.failures:
        raise VaultError(f"load failed: {loop.failures[0]}")
    return result


def describe(result: LoadResult, prefix: str, *names: str) -> dict[str, Any]:
    """The usual figures of one operation (or several taken together), keyed ``prefix_*``."""
    summary = result.summary(*names)
    cpu = result.cpu_ms_per_operation(*names)
    return {
        f"{prefix}_per_s": round(result.per_s(*names), 1),
        f"{prefix}_p50_ms": summary.p50_ms,
        f"{prefix}_p99_ms": summary.p99_ms,
        **{f"{prefix}_{who}_cpu_ms_per_op": value for who, value in cpu.items()},
    }
