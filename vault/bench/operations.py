"""What operators run, timed: audit verification, master key rotation; and the memory a
server needs for a 50 MB document, in and out."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import httpx

from vault.bench.server import Server
from vault.bench.stats import RssSampler
from vault.bench.workload import Content, iti105_body
from vault.errors import VaultError
from vault.services import Services


@dataclass
class AuditTiming:
    entries: int
    verify_seconds: float
    checkpoint_seconds: float
    intact: bool

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.verify_seconds if self.verify_seconds else 0.0


def time_audit_verification(services: Services) -> AuditTiming:
    """Take every entry into the Merkle tree and sign a checkpoint (as each server does
    every minute), then run exactly what ``vault audit verify`` runs over the whole log."""
    log = services.audit_log
    started = time.perf_counter()
    log.checkpoints.make(services.session_factory)
    checkpointed = time.perf_counter() - started
    started = time.perf_counter()
    report = log.verifier.verify(services.session_factory)
    verified = time.perf_counter() - started
    return AuditTiming(report.entries, verified, checkpointed, report.ok)


@dataclass
class RotationTiming:
    patients: int
    seconds: float

    @property
    def patients_per_s(self) -> float:
        return self.patients / self.seconds if self.seconds else 0.0


def time_key_rotation(services: Services) -> RotationTiming:
    """``vault keys rotate``: a new master key, every patient KEK rewrapped under it."""
    started = time.perf_counter()
    _master, count = services.keys.rotate_master_key(services.session_factory)
    return RotationTiming(count, time.perf_counter() - started)


@dataclass
class LargeDocument:
    binary_id: str
    ingest_seconds: float
    ingest_rss_peak_mb: float
    ingest_rss_baseline_mb: float


def ingest_large(server: Server, token: str, patient_id: str, content: Content) -> LargeDocument:
    """ITI-105 of one large document; the serving processes' memory sampled meanwhile."""
    body = iti105_body(patient_id, content)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    with RssSampler(server.worker_pids()) as sampler:
        started = time.perf_counter()
        response = httpx.post(
            f"{server.base_url}/fhir/DocumentReference", content=body, headers=headers, timeout=600
        )
        elapsed = time.perf_counter() - started
    if response.status_code != 201:
        raise VaultError(f"large document: HTTP {response.status_code} {response.text[:300]}")
    url = response.json()["content"][0]["attachment"]["url"]
    return LargeDocument(url.rpartition("/")[2], elapsed, sampler.peak_mb, sampler.baseline_mb)


@dataclass
class StreamTiming:
    seconds: float
    rss_peak_mb: float
    rss_baseline_mb: float
    size: int

    @property
    def mb_per_s(self) -> float:
        return self.size / 1e6 / self.seconds if self.seconds else 0.0


def stream_large(server: Server, token: str, binary_id: str, expected: Content) -> StreamTiming:
    """Download the large document as a client streaming it to disk would, from a server
    that has served only small requests, and check every byte."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=600) as http:
        # A first small request, so that the baseline is a worker that has served one.
        http.get("/fhir/metadata")
        with RssSampler(server.worker_pids()) as sampler:
            started = time.perf_counter()
            digest = hashlib.sha1(usedforsecurity=False)
            size = 0
            with http.stream("GET", f"/fhir/Binary/{binary_id}") as response:
                if response.status_code != 200:
                    raise VaultError(f"large download: HTTP {response.status_code}")
                for chunk in response.iter_bytes(1 << 16):
                    digest.update(chunk)
                    size += len(chunk)
            elapsed = time.perf_counter() - started
    if digest.hexdigest() != hashlib.sha1(expected.data, usedforsecurity=False).hexdigest():
        raise VaultError("large download: the bytes differ from those stored")
    return StreamTiming(elapsed, sampler.peak_mb, sampler.baseline_mb, size)
