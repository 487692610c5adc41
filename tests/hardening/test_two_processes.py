"""Two ``vault serve`` processes against one PostgreSQL and one blob store (the database
itself, or a ``file://`` store of its own), one client stream alternating between them:
no document is lost or duplicated (each acknowledged id is found exactly once by search,
and reads back byte-identical, through either process), the same masterIdentifier sent
to both at once makes one document, and the audit log verifies."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.factories import Tokens, document_reference, ins, patient_resource
from tests.hardening.load import Ledger, writer
from tests.hardening.servers import BASE_URL, VaultServer, run_vault, scratch_database, vault_env
from vault.db import make_engine
from vault.identity.tokens import EmbeddedIssuer
from vault.models import Document

WRITERS = 8
PER_WRITER = 8
SAME_MASTER_ROUNDS = 3
SAME_MASTER_SENDERS = 6


def search_ids(
    http: httpx.Client, base: str, patient_id: str, headers: dict[str, str]
) -> list[str]:
    """Every id a paged search returns, in order, following next links to the end."""
    found: list[str] = []
    url: str | None = f"{base}/fhir/DocumentReference?patient={patient_id}&_count=7"
    while url:
        page = http.get(url, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        found += [entry["resource"]["id"] for entry in body.get("entry", [])]
        following = [link["url"] for link in body.get("link", []) if link["relation"] == "next"]
        # Links name the configured base; the query is what matters.
        url = (
            f"{base}/fhir/DocumentReference?{following[0].split('?', 1)[1]}" if following else None
        )
    return found


@pytest.mark.slow
@pytest.mark.parametrize("blob_store", ["db:", "file"])
def test_two_processes_under_concurrent_load_lose_and_duplicate_nothing(
    tmp_path: Path, blob_store: str
) -> None:
    data_dir = tmp_path / "data"
    tokens = Tokens(EmbeddedIssuer(data_dir, BASE_URL, "vault"))
    # Ciphertext in the database, or in one blob store of its own both processes share.
    store = f"file://{tmp_path / 'blobs'}" if blob_store == "file" else blob_store
    with scratch_database() as url:
        env = vault_env(url, data_dir, store)
        first = VaultServer(env, tmp_path / "first.log")
        second = VaultServer(env, tmp_path / "second.log")
        try:
            first.start()
            patients = []
            for seed in (1, 2, 3):
                # Through the first process alone: the keyring is made once, then shared.
                created = httpx.post(
                    f"{first.url}/fhir/Patient",
                    json=patient_resource(ins(seed)),
                    headers=tokens.patient(ins(seed)),
                    timeout=30,
                )
                assert created.status_code == 201, created.text
                patients.append(created.headers["Location"].split("/Patient/")[1].split("/")[0])
            second.start()
            bases = [first.url, second.url]

            ledger = Ledger()
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=writer,
                    # Each request of each writer goes to either process, in turn.
                    args=(_alternating(bases), tokens, patients, ledger, stop),
                    kwargs={"size": 4096, "seed": number, "limit": PER_WRITER},
                )
                for number in range(WRITERS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=300)
                assert not thread.is_alive()
            assert ledger.transport_errors == 0
            assert set(ledger.statuses) <= {200, 201}, Counter(ledger.statuses)
            assert len(ledger.acknowledged) == WRITERS * PER_WRITER

            check_every_document_found_exactly_once(bases, tokens, patients, ledger)
            check_every_document_reads_back_through_both(bases, tokens, ledger)
            check_one_document_per_master_identifier(bases, tokens, patients[0], url)

            verified = run_vault(env, "audit", "verify")
            assert verified.returncode == 0, verified.stdout + verified.stderr
        finally:
            first.stop()
            second.stop()


def _alternating(bases: list[str]) -> Callable[[], str]:
    turn = iter(range(10**9))
    lock = threading.Lock()

    def next_base() -> str:
        with lock:
            return bases[next(turn) % len(bases)]

    return next_base


def check_every_document_found_exactly_once(
    bases: list[str], tokens: Tokens, patients: list[str], ledger: Ledger
) -> None:
    expected: dict[str, set[str]] = {patient_id: set() for patient_id in patients}
    for acknowledged in ledger.acknowledged.values():
        expected[acknowledged.sent.patient_id].add(acknowledged.document_id)
    with httpx.Client(timeout=30) as http:
        for base in bases:
            for seed, patient_id in enumerate(patients, start=1):
                found = search_ids(http, base, patient_id, tokens.patient(ins(seed)))
                duplicates = [item for item, count in Counter(found).items() if count > 1]
                assert not duplicates
                assert set(found) == expected[patient_id]


def check_every_document_reads_back_through_both(
    bases: list[str], tokens: Tokens, ledger: Ledger
) -> None:
    """Whichever process stored a document, the other finds its ciphertext and its key."""
    with httpx.Client(timeout=30) as http:
        for acknowledged in ledger.acknowledged.values():
            for base in bases:
                content = http.get(
                    f"{base}/fhir/Binary/{acknowledged.binary_id}", headers=tokens.professional()
                )
                assert content.status_code == 200, content.text
                assert content.content == acknowledged.sent.content


def check_one_document_per_master_identifier(
    bases: list[str], tokens: Tokens, patient_id: str, url: str
) -> None:
    for _ in range(SAME_MASTER_ROUNDS):
        master = f"urn:uuid:{uuid.uuid4()}"
        body = json.dumps(
            document_reference(
                {"reference": f"Patient/{patient_id}"}, b"%PDF-1.7 once", master=master
            )
        )
        start = threading.Barrier(SAME_MASTER_SENDERS)

        def send(number: int, body: str = body, start: threading.Barrier = start) -> httpx.Response:
            with httpx.Client(timeout=30) as http:
                start.wait()
                return http.post(
                    f"{bases[number % 2]}/fhir/DocumentReference",
                    content=body,
                    headers=tokens.professional(),
                )

        with ThreadPoolExecutor(SAME_MASTER_SENDERS) as pool:
            responses = list(pool.map(send, range(SAME_MASTER_SENDERS)))
        statuses = Counter(response.status_code for response in responses)
        # A loser of the race may be told to retry (409); none fails, one creates.
        assert set(statuses) <= {200, 201, 409}, [r.text for r in responses]
        assert statuses[201] == 1, statuses
        ids = {r.json()["id"] for r in responses if r.is_success}
        with httpx.Client(timeout=30) as http:
            for response in responses:
                if response.status_code == 409:
                    retried = http.post(
                        f"{bases[0]}/fhir/DocumentReference",
                        content=body,
                        headers=tokens.professional(),
                    )
                    assert retried.status_code == 200, retried.text
                    ids.add(retried.json()["id"])
        assert len(ids) == 1
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                rows = connection.scalar(
                    select(func.count())
                    .select_from(Document)
                    .where(Document.master_identifier == master)
                )
        finally:
            engine.dispose()
        assert rows == 1
