"""Crash safety of a real ``vault serve`` (PostgreSQL, file:// blob store): killed with
SIGKILL again and again in the middle of concurrent ingests, then restarted.

Afterwards every acknowledged document is readable and byte-identical; whatever was in
flight is either whole or absent (no document without its version, binary or blob); the
blobs the dead requests left behind are swept by ``vault blobs sweep --grace 0``; and
``vault audit verify`` passes."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.factories import Tokens, ins, patient_resource
from tests.hardening.load import Ledger, writer
from tests.hardening.servers import BASE_URL, VaultServer, run_vault, scratch_database, vault_env
from vault.db import make_engine
from vault.identity.tokens import EmbeddedIssuer
from vault.models import AuditEntry, Binary, Document, DocumentVersion
from vault.storage.blobs.file import PARTIAL

KILLS = 3
WRITERS = 6
# Acknowledged documents per cycle before the kill: enough that the kill lands mid-stream.
ACKS_PER_CYCLE = 8
CONTENT_BYTES = 48 * 1024


def blob_files(root: Path) -> set[str]:
    return {path.name for path in root.glob("*/*/*") if path.is_file()}


@pytest.mark.slow
def test_kill_9_during_concurrent_ingests_loses_nothing_acknowledged_and_leaves_nothing_half(
    tmp_path: Path,
) -> None:
    data_dir, blobs = tmp_path / "data", tmp_path / "blobs"
    tokens = Tokens(EmbeddedIssuer(data_dir, BASE_URL, "vault"))
    with scratch_database() as url:
        env = vault_env(
            url,
            data_dir,
            f"file://{blobs}",
            # Checkpoints are signed all along, so kills land in their transactions too.
            VAULT_AUDIT_CHECKPOINT_SECONDS="0.5",
        )
        server = VaultServer(env, tmp_path / "server.log")
        try:
            base = server.start()
            patients = []
            for seed in (1, 2, 3):
                created = httpx.post(
                    f"{base}/fhir/Patient",
                    json=patient_resource(ins(seed)),
                    headers=tokens.patient(ins(seed)),
                    timeout=30,
                )
                assert created.status_code == 201, created.text
                patients.append(created.headers["Location"].split("/Patient/")[1].split("/")[0])

            ledger = Ledger()
            chance = random.Random(6)
            for cycle in range(KILLS):
                if cycle:
                    server.start()
                stop = threading.Event()
                threads = [
                    threading.Thread(
                        target=writer,
                        args=(lambda: server.url, tokens, patients, ledger, stop),
                        kwargs={"size": CONTENT_BYTES, "seed": cycle * WRITERS + number},
                    )
                    for number in range(WRITERS)
                ]
                for thread in threads:
                    thread.start()
                target = ledger.acknowledged_count() + ACKS_PER_CYCLE
                waited = 0.0
                while ledger.acknowledged_count() < target and waited < 60:
                    stop.wait(0.01)
                    waited += 0.01
                stop.wait(chance.uniform(0, 0.05))
                server.kill()
                stop.set()
                for thread in threads:
                    thread.join(timeout=60)
                    assert not thread.is_alive()

            # No request ever failed inside the server: answers were 2xx, or no answer at all.
            assert all(200 <= status < 300 for status in ledger.statuses), ledger.statuses
            assert ledger.transport_errors >= 1, "the clients never saw the server die"
            assert len(ledger.acknowledged) >= KILLS * ACKS_PER_CYCLE

            base = server.start()
            check_acknowledged_documents_are_whole(base, tokens, ledger)
            check_stored_documents_are_whole(url, blobs, base, tokens, ledger)
            check_orphans_are_swept(env, url, blobs)
            verified = run_vault(env, "audit", "verify")
            assert verified.returncode == 0, verified.stdout + verified.stderr
        finally:
            server.stop()


def check_acknowledged_documents_are_whole(base: str, tokens: Tokens, ledger: Ledger) -> None:
    with httpx.Client(timeout=30) as http:
        for acknowledged in ledger.acknowledged.values():
            headers = tokens.professional()
            reference = http.get(
                f"{base}/fhir/DocumentReference/{acknowledged.document_id}", headers=headers
            )
            assert reference.status_code == 200, reference.text
            assert reference.json()["masterIdentifier"]["value"] == acknowledged.sent.master
            content = http.get(f"{base}/fhir/Binary/{acknowledged.binary_id}", headers=headers)
            assert content.status_code == 200, content.text
            assert content.content == acknowledged.sent.content


def check_stored_documents_are_whole(
    url: str, blobs: Path, base: str, tokens: Tokens, ledger: Ledger
) -> None:
    """Every document in the database -- acknowledged or not -- is complete, is one the
    clients sent, and reads back as sent. Every binary has its blob."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            documents = connection.execute(select(Document.__table__)).all()
            versions = {
                (row.document_id, row.version): row
                for row in connection.execute(select(DocumentVersion.__table__))
            }
            binaries = {row.id: row for row in connection.execute(select(Binary.__table__))}
            audited = set(
                connection.scalars(
                    select(AuditEntry.resource_id).where(
                        AuditEntry.resource_type == "DocumentReference",
                        AuditEntry.outcome == "success",
                    )
                )
            )
    finally:
        engine.dispose()
    on_disk = blob_files(blobs)
    stored_masters = {row.master_identifier for row in documents}
    assert stored_masters <= ledger.sent.keys()
    assert set(ledger.acknowledged) <= stored_masters
    for binary in binaries.values():
        assert binary.blob_key in on_disk, "a binary without its blob"
    with httpx.Client(timeout=30) as http:
        for document in documents:
            version = versions.get((document.id, document.current_version))
            assert version is not None, "a document without its version"
            assert version.binary_id in binaries, "a version without its binary"
            assert document.id in audited, "a stored document without its audit entry"
            content = http.get(
                f"{base}/fhir/Binary/{version.binary_id}", headers=tokens.professional()
            )
            assert content.status_code == 200, content.text
            assert content.content == ledger.sent[document.master_identifier].content


def check_orphans_are_swept(env: dict[str, str], url: str, blobs: Path) -> None:
    swept = run_vault(env, "blobs", "sweep", "--grace", "0")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            referenced = set(connection.scalars(select(Binary.blob_key)))
    finally:
        engine.dispose()
    remaining = {path.name for path in blobs.glob("*/*/*")}
    assert not {name for name in remaining if name.endswith(PARTIAL)}
    assert remaining == referenced
