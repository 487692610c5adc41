"""Reads over HTTP: a patient's app searching its record (ITI-67) and downloading a
100 KB document (ITI-68), timed at each store size; and the query plan of the search,
which must use the (patient_id, created_at, id) index whatever the size."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from vault.bench import repository
from vault.bench.stats import Latencies
from vault.db import Session
from vault.errors import VaultError
from vault.settings import Settings

SEARCH_INDEX = "ix_documents_patient_created"
# The page a search without _count returns, as the benchmark's searches are.
DEFAULT_COUNT: int = Settings.model_fields["search_default_count"].default


@dataclass(frozen=True)
class Probe:
    """A patient whose reads are timed: their token, and their documents' binaries."""

    patient_id: str
    token: str
    binary_ids: tuple[str, ...]


@dataclass
class ReadResult:
    search: Latencies
    binary: Latencies
    documents_per_search: float


def run_reads(
    base_url: str,
    probes: list[Probe],
    expected_sha1: str,
    expected_documents: int,
    *,
    requests: int,
    clients: int,
    warmup: int = 20,
) -> ReadResult:
    """Each client picks a probe patient, searches their documents, then downloads one,
    checking what comes back: the right number of entries, and the exact bytes."""
    search_times: list[float] = []
    binary_times: list[float] = []
    found: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()
    remaining = {"warmup": warmup, "timed": requests}

    def client(number: int) -> None:
        rng = random.Random(number)  # noqa: S311 - a reproducible workload, not a secret
        with httpx.Client(base_url=base_url, timeout=60) as http:
            while not failures:
                with lock:
                    if remaining["warmup"] > 0:
                        remaining["warmup"] -= 1
                        timed = False
                    elif remaining["timed"] > 0:
                        remaining["timed"] -= 1
                        timed = True
                    else:
                        return
                probe = rng.choice(probes)
                headers = {"Authorization": f"Bearer {probe.token}"}
                started = time.perf_counter()
                response = http.get(
                    "/fhir/DocumentReference",
                    params={"patient": f"Patient/{probe.patient_id}"},
                    headers=headers,
                )
                searched = time.perf_counter() - started
                if response.status_code != 200:
                    failures.append(f"search: HTTP {response.status_code}")
                    return
                entries = len(response.json().get("entry") or [])
                if entries < expected_documents:
                    failures.append(f"search found {entries} of {expected_documents} documents")
                    return
                started = time.perf_counter()
                download = http.get(f"/fhir/Binary/{rng.choice(probe.binary_ids)}", headers=headers)
                downloaded = time.perf_counter() - started
                if download.status_code != 200:
                    failures.append(f"download: HTTP {download.status_code}")
                    return
                digest = hashlib.sha1(download.content, usedforsecurity=False).hexdigest()
                if digest != expected_sha1:
                    failures.append("download: the bytes differ from those stored")
                    return
                if timed:
                    with lock:
                        search_times.append(searched)
                        binary_times.append(downloaded)
                        found.append(entries)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise VaultError(f"reads failed: {failures[0]}")
    return ReadResult(
        Latencies.of(search_times),
        Latencies.of(binary_times),
        sum(found) / len(found) if found else 0.0,
    )


def search_plan(session: Session, patient_id: str, count: int = DEFAULT_COUNT) -> dict[str, Any]:
    """EXPLAIN of the first statement of a search for a page of ``count`` (the default
    page, as the benchmark's searches ask for)."""
    return repository.search_plan(session, patient_id, count)


def plan_uses_index(plan: dict[str, Any]) -> bool:
    """The documents table is reached through the search index, never scanned whole."""
    nodes = [plan["Plan"]]
    uses = False
    while nodes:
        node = nodes.pop()
        if node.get("Relation Name") == "documents" and node.get("Node Type") == "Seq Scan":
            return False
        uses = uses or node.get("Index Name") == SEARCH_INDEX
        nodes.extend(node.get("Plans", []))
    return uses


def plan_shape(plan: dict[str, Any]) -> str:
    """The plan's nodes in one line, depth first: what the report shows beside the verdict,
    so a plan that misses the index says what it did instead."""
    shown: list[str] = []
    nodes = [plan["Plan"]]
    while nodes:
        node = nodes.pop(0)
        parts = [node["Node Type"], node.get("Relation Name"), node.get("Index Name")]
        shown.append(" ".join(part for part in parts if part))
        nodes[:0] = node.get("Plans", [])
    return " > ".join(shown)
