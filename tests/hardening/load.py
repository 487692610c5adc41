"""Concurrent clients for the process-level hardening tests: each ingests documents
(ITI-105 and ITI-65 in turn) and remembers exactly what it sent and what was acknowledged."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.factories import Tokens, document_reference, provide_bundle


@dataclass(frozen=True)
class Sent:
    master: str
    patient_id: str
    content: bytes


@dataclass(frozen=True)
class Acknowledged:
    sent: Sent
    document_id: str
    binary_id: str


@dataclass
class Ledger:
    """Everything the clients sent and how each request ended, shared by the threads."""

    sent: dict[str, Sent] = field(default_factory=dict)
    acknowledged: dict[str, Acknowledged] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    # Every non-2xx answer: (status, resourceType of its body or what stood in its place).
    refusals: list[tuple[int, str]] = field(default_factory=list)
    transport_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses.append(response.status_code)
            if not response.is_success:
                self.refusals.append((response.status_code, kind_of(response)))

    def acknowledged_count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


def kind_of(response: httpx.Response) -> str:
    if not response.headers.get("content-type", "").startswith("application/fhir+json"):
        return f"not FHIR: {response.headers.get('content-type')}"
    try:
        return str(response.json().get("resourceType"))
    except ValueError:
        return "not JSON"


def ingest(
    http: httpx.Client, base: str, tokens: Tokens, sent: Sent, bundle: bool
) -> httpx.Response:
    subject = {"reference": f"Patient/{sent.patient_id}"}
    if bundle:
        body = provide_bundle(subject, [(sent.content, "application/pdf")])
        body["entry"][1]["resource"]["masterIdentifier"]["value"] = sent.master
        return http.post(f"{base}/fhir", json=body, headers=tokens.professional())
    resource = document_reference(subject, sent.content, master=sent.master)
    return http.post(f"{base}/fhir/DocumentReference", json=resource, headers=tokens.professional())


def acknowledgement(sent: Sent, response: httpx.Response) -> Acknowledged:
    body: dict[str, Any] = response.json()
    if body["resourceType"] == "Bundle":
        locations = [entry["response"]["location"] for entry in body["entry"]]
        document = next(loc for loc in locations if loc.startswith("DocumentReference/"))
        binary = next(loc for loc in locations if loc.startswith("Binary/"))
        return Acknowledged(sent, document.split("/")[1], binary.split("/")[1])
    return Acknowledged(sent, body["id"], body["content"][0]["attachment"]["url"].rsplit("/", 1)[1])


def writer(
    base: Callable[[], str],
    tokens: Tokens,
    patients: list[str],
    ledger: Ledger,
    stop: threading.Event,
    *,
    size: int,
    seed: int,
    limit: int = 10_000,
) -> None:
    """Ingest until told to stop (or ``limit`` documents); every request's fate goes in the
    ledger. A transport error (the server died under it) leaves the outcome unknown."""
    with httpx.Client(timeout=30) as http:
        for number in range(limit):
            if stop.is_set():
                return
            sent = Sent(
                f"urn:uuid:{uuid.uuid4()}",
                patients[(seed + number) % len(patients)],
                b"%PDF-1.7 " + os.urandom(size),
            )
            with ledger.lock:
                ledger.sent[sent.master] = sent
            try:
                response = ingest(http, base(), tokens, sent, bundle=(seed + number) % 2 == 0)
            except httpx.TransportError:
                with ledger.lock:
                    ledger.transport_errors += 1
                continue
            ledger.record(response)
            if response.is_success:
                acknowledged = acknowledgement(sent, response)
                with ledger.lock:
                    ledger.acknowledged[sent.master] = acknowledged
