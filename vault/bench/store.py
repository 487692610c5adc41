"""Filling the store to a size, fast: real rows, written with COPY.

Every row is what the services write -- patients and documents sealed under fresh data
keys wrapped by each patient's KEK, itself wrapped by the key provider; content in the
blob store's chunks; one hash-chained audit entry per creation -- built with the vault's
own crypto, context and hashing functions, then copied in batches, since going through
the HTTP API would take hours to reach a million documents. The reads measured afterwards
decrypt these rows, and ``vault audit verify`` checks their chains, so a row that differed
from the services' would show.

Loading is incremental: it counts what is there and adds the rest, so a store filled to
100 thousand documents is grown to a million by the next, larger run.

Patient ``n`` has the INS ``ins_for(n)``. Patients 0 to ``probes - 1`` are the probes:
each has ``probe_documents`` documents of ``probe_size`` bytes, whose reads are timed at
every store size; the other ("filler") documents are smaller, so that a million of them
fit on a small disk: the cost of a search or download is in indexes and in the one record
read, not in the size of other people's documents.
"""

from __future__ import annotations

import hashlib
import json
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from vault.access.chain import GENESIS, HASHED_COLUMNS, canonical_fields, entry_hash
from vault.access.journal import chain_number
from vault.access.service import ins_index
from vault.bench import repository
from vault.bench.repository import psycopg_url
from vault.bench.workload import (
    AUTHOR_IDNPS,
    KB,
    Content,
    document_reference,
    ins_for,
    patient_resource,
    pdf_document,
)
from vault.documents.repository import rows as document_rows
from vault.documents.repository.rows import Row
from vault.documents.service import binary_context, version_context
from vault.errors import VaultError
from vault.models.audit import AuditEntry
from vault.models.base import new_id
from vault.patients.service import patient_context
from vault.storage import crypto
from vault.storage.blobs.db import chunk_rows
from vault.storage.envelope import dek_context
from vault.storage.keys.provider import KeyProvider
from vault.storage.keys.service import _kek_context

MARKER = "vault bench store"
BATCH_DOCUMENTS = 4000
BATCH_PATIENTS = 2000
TYPE_CODE = "http://loinc.org|11502-2"
CATEGORY_CODE = (
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument|10"
)
DOCUMENT_DATE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Shape:
    """What the store holds at one size."""

    documents: int
    patients: int
    probes: int = 100
    probe_documents: int = 10
    probe_size: int = 100 * KB
    filler_size: int = 8 * KB


@dataclass
class LoadReport:
    patients_added: int = 0
    documents_added: int = 0
    seconds: float = 0.0
    documents: int = 0
    patients: int = 0

    @property
    def documents_per_s(self) -> float:
        return self.documents_added / self.seconds if self.seconds else 0.0


@dataclass
class _Batch:
    """Rows of one transaction, by table."""

    patient_keys: list[tuple[Any, ...]] = field(default_factory=list)
    patients: list[tuple[Any, ...]] = field(default_factory=list)
    # Rows with their columns: audit entries built from what their hash covers; the rest by
    # the blob store's and the document service's own builders.
    audit: list[Row] = field(default_factory=list)
    blob_chunks: list[Row] = field(default_factory=list)
    binaries: list[Row] = field(default_factory=list)
    documents: list[Row] = field(default_factory=list)
    versions: list[Row] = field(default_factory=list)
    heads: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    # Where each chain stood when the batch was built.
    started: dict[str, int] = field(default_factory=dict)


# The columns of the rows built here; those of a document's rows, blob chunks and audit
# entries are the rows' own (_copy_rows).
COLUMNS = {
    "patient_keys": "id, patient_id, wrapped_key, master_key_id, created_at",
    "patients": "id, ins_index, version, resource_ciphertext, resource_dek, kek_id, "
    "created_at, updated_at",
    # The reference table of patients by INS (docs/scaling.md), filled from their rows.
    "patient_ins": "ins_index, patient_id",
}


# The order of the copies: a row after those it references.
_COPY_ORDER = (
    "patients",
    "patient_keys",
    "blob_chunks",
    "binaries",
    "documents",
    "document_versions",
    "audit_entries",
    "patient_ins",
    "resource_patients",
)


def _copy_rows(rows: list[Row]) -> tuple[str, list[tuple[Any, ...]]]:
    """Rows of one builder as COPY takes them: the builder's columns, and each row's values
    in that order. A column the builders gain is copied too, so this loader cannot fall
    behind the service's writes."""
    names = tuple(rows[0])
    return ", ".join(names), [tuple(row[name] for name in names) for row in rows]


def seal_json(kek: bytes, resource: dict[str, Any], context: bytes) -> tuple[bytes, bytes]:
    """As Envelope.seal_json: the ciphertext and its data key wrapped by the KEK."""
    plaintext = json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode()
    dek = crypto.new_data_key()
    return crypto.seal(dek, plaintext, context), crypto.seal(kek, dek, dek_context(context))


class StoreLoader:
    def __init__(
        self,
        database_url: str,
        provider: KeyProvider,
        shape: Shape,
        *,
        seed: int = 20,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.dsn = psycopg_url(database_url)
        self.provider = provider
        self.shape = shape
        self._random = random.Random(seed)  # noqa: S311 - reproducible, not a secret
        self._progress = progress or (lambda _message: None)
        self._keks: dict[str, tuple[str, bytes]] = {}
        self._heads: dict[str, tuple[int, bytes]] = {}
        self._writer: _Writer | None = None
        self._probe_content = Content.of(pdf_document(shape.probe_size, seed))
        self._filler_content = [
            Content.of(pdf_document(shape.filler_size, seed + 1 + n)) for n in range(8)
        ]
        self._now = datetime.now(UTC)

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(self.dsn) as connection:
            yield connection

    # -- the whole fill --------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        with self.connect() as connection:
            return repository.store_counts(connection)

    def fill(self, documents: int, patients: int) -> LoadReport:
        """Add patients, then documents, until the store holds at least this many."""
        report = LoadReport()
        started = time.perf_counter()
        have_patients, have_documents = self.counts()
        if have_patients < patients:
            report.patients_added = patients - have_patients
            report.documents_added += self._add_patients(have_patients, patients)
        have_patients, have_documents = self.counts()
        missing = documents - have_documents
        if missing > 0:
            report.documents_added += self._add_filler(missing)
        with self.connect() as connection:
            repository.analyze(connection)
        report.seconds = time.perf_counter() - started
        report.patients, report.documents = self.counts()
        return report

    @property
    def probe_sha1(self) -> str:
        return hashlib.sha1(self._probe_content.data, usedforsecurity=False).hexdigest()

    def probe_patients(self) -> dict[int, str]:
        """Probe patients' record ids, by patient number."""
        numbers = {
            ins_index(self.provider, "ins", ins_for(number)): number
            for number in range(self.shape.probes)
        }
        with self.connect() as connection:
            rows = repository.patients_by_ins(connection, list(numbers))
        return dict(sorted((numbers[bytes(index)], patient_id) for index, patient_id in rows))

    def probe_patient_ids(self) -> list[str]:
        return list(self.probe_patients().values())

    def probe_binaries(self) -> dict[str, list[str]]:
        """Each probe patient's binaries of the probe size (not the large document)."""
        found: dict[str, list[str]] = {}
        with self.connect() as connection:
            rows = repository.binaries_of_size(
                connection, self.probe_patient_ids(), self.shape.probe_size
            )
        for patient_id, binary_id in rows:
            found.setdefault(patient_id, []).append(binary_id)
        return found

    def filler_patients(self, count: int) -> list[str]:
        """Some patients who are not probes, for the ingest to write to."""
        probes = self.probe_patient_ids()
        with self.connect() as connection:
            return repository.patients_except(connection, probes, count)

    # -- the patient with a long record ------------------------------------------------------

    def fill_long_record(self, number: int, documents: int) -> str:
        """Patient ``number`` (outside the others' numbers) with at least ``documents``
        documents of the filler size: a chronic illness's record. Their record id."""
        patient_id = self.patient_id(number)
        if patient_id is None:
            batch = _Batch()
            patient_id = self._patient(batch, number)
            self._submit(batch)
            self._drain()
        with self.connect() as connection:
            have = repository.document_count(connection, patient_id)
        added = have
        while added < documents:
            batch = _Batch()
            self._load_keks([patient_id])
            self._load_heads(batch, [patient_id])
            for index in range(min(BATCH_DOCUMENTS, documents - added)):
                self._document(
                    batch, patient_id, self._filler_content[index % len(self._filler_content)]
                )
                added += 1
            self._submit(batch)
            self._progress(f"long record: {added}/{documents} documents")
        self._drain()
        if added > have:
            with self.connect() as connection:
                repository.analyze_documents(connection)
        return patient_id

    def patient_id(self, number: int) -> str | None:
        with self.connect() as connection:
            return repository.patient_by_ins(
                connection, ins_index(self.provider, "ins", ins_for(number))
            )

    def check_keys(self) -> None:
        """A store filled under another keyring (VAULT_DATA_DIR, VAULT_KEY_PROVIDER) cannot
        be read: say so before anything else."""
        with self.connect() as connection:
            row = repository.any_patient_key(connection)
        if row is None:
            return
        kek_id, patient_id, wrapped, master_key_id = row
        try:
            self.provider.unwrap(master_key_id, wrapped, _kek_context(patient_id, kek_id))
        except VaultError:
            raise VaultError(
                "this store's keys are not in the key provider configured here; run with "
                "the VAULT_DATA_DIR (or VAULT_KEY_PROVIDER) it was filled with"
            ) from None

    # -- patients ------------------------------------------------------------------------

    def _add_patients(self, first: int, end: int) -> int:
        added_documents = 0
        for start in range(first, end, BATCH_PATIENTS):
            batch = _Batch()
            for number in range(start, min(end, start + BATCH_PATIENTS)):
                patient_id = self._patient(batch, number)
                if number < self.shape.probes:
                    for _ in range(self.shape.probe_documents):
                        self._document(batch, patient_id, self._probe_content)
                        added_documents += 1
            self._submit(batch)
            self._progress(f"patients {min(end, start + BATCH_PATIENTS)}/{end}")
        self._drain()
        return added_documents

    def _patient(self, batch: _Batch, number: int) -> str:
        patient_id = new_id()
        kek_id = new_id()
        kek = crypto.new_data_key()
        master_key_id, wrapped = self.provider.wrap(kek, _kek_context(patient_id, kek_id))
        created = self._past()
        batch.patient_keys.append((kek_id, patient_id, wrapped, master_key_id, created))
        self._keks[patient_id] = (kek_id, kek)
        ins = ins_for(number)
        resource = {
            **patient_resource(ins, number),
            "id": patient_id,
            "meta": {"versionId": "1", "lastUpdated": created.isoformat()},
        }
        ciphertext, wrapped_dek = seal_json(kek, resource, patient_context(patient_id, 1))
        batch.patients.append(
            (
                patient_id,
                ins_index(self.provider, "ins", ins),
                1,
                ciphertext,
                wrapped_dek,
                kek_id,
                created,
                created,
            )
        )
        self._audit(batch, patient_id, "Patient", patient_id, "patient:create", created)
        return patient_id

    # -- documents -----------------------------------------------------------------------

    def _add_filler(self, count: int) -> int:
        probes = set(self.probe_patient_ids())
        with self.connect() as connection:
            everyone = repository.all_patient_ids(connection)
        fillers = [patient_id for patient_id in everyone if patient_id not in probes]
        if not fillers:
            raise VaultError("the store has no patient to give documents to")
        added = 0
        while added < count:
            size = min(BATCH_DOCUMENTS, count - added)
            owners = self._random.sample(fillers, min(len(fillers), max(1, size // 8)))
            batch = _Batch()
            self._load_keks(owners)
            self._load_heads(batch, owners)
            for index in range(size):
                content = self._filler_content[index % len(self._filler_content)]
                self._document(batch, owners[index % len(owners)], content)
            self._submit(batch)
            added += size
            self._progress(f"documents +{added}/{count}")
        self._drain()
        return added

    def _load_keks(self, patient_ids: Sequence[str]) -> None:
        wanted = [patient_id for patient_id in patient_ids if patient_id not in self._keks]
        if not wanted:
            return
        with self.connect() as connection:
            rows = repository.current_patient_keys(connection, wanted)
        for kek_id, patient_id, wrapped, master_key_id in rows:
            key = self.provider.unwrap(master_key_id, wrapped, _kek_context(patient_id, kek_id))
            self._keks[patient_id] = (kek_id, key)

    def _load_heads(self, batch: _Batch, patient_ids: Sequence[str]) -> None:
        """Where each chain stands: as this loader left it (its last batch may still be
        on its way to the database), or as the database has it."""
        unknown = [patient_id for patient_id in patient_ids if patient_id not in self._heads]
        if unknown:
            with self.connect() as connection:
                rows = repository.chain_heads(connection, unknown)
            for key, last_seq, last_hash in rows:
                self._heads[key] = (int(last_seq), bytes(last_hash))
        for patient_id in patient_ids:
            if patient_id in self._heads:
                batch.heads[patient_id] = self._heads[patient_id]
                batch.started[patient_id] = self._heads[patient_id][0]

    def _document(self, batch: _Batch, patient_id: str, content: Content) -> None:
        """As DocumentService.create for ITI-105 by the bench's professional."""
        kek_id, kek = self._keks[patient_id]
        document_id, binary_id, blob_key = new_id(), new_id(), uuid.uuid4().hex
        created = self._past()
        context = binary_context(binary_id, document_id, patient_id)
        dek = crypto.new_data_key()
        batch.blob_chunks += chunk_rows(
            blob_key, crypto.seal_segments(dek, content.data, context), created
        )
        batch.binaries.append(
            document_rows.binary_row(
                binary_id=binary_id,
                document_id=document_id,
                patient_id=patient_id,
                content_type="application/pdf",
                size=len(content.data),
                blob_key=blob_key,
                segment_size=crypto.DEFAULT_SEGMENT_SIZE,
                wrapped_dek=crypto.seal(kek, dek, dek_context(context)),
                kek_id=kek_id,
                created_at=created,
            )
        )
        resource = document_reference(patient_id, content, inline=False)
        master = resource["masterIdentifier"]["value"]
        resource["id"] = document_id
        resource["meta"] = {"versionId": "1", "lastUpdated": created.isoformat()}
        resource["content"][0]["attachment"]["url"] = f"Binary/{binary_id}"
        ciphertext, wrapped = seal_json(kek, resource, version_context(document_id, 1, patient_id))
        batch.documents.append(
            document_rows.document_row(
                document_id=document_id,
                patient_id=patient_id,
                master_identifier=master,
                type_code=TYPE_CODE,
                category_code=CATEGORY_CODE,
                date=DOCUMENT_DATE,
                security_labels=" ",
                author_kind="professional",
                author_id=AUTHOR_IDNPS,
                content_fingerprint=self.provider.blind_index("content", content.data),
                created_at=created,
            )
        )
        batch.versions.append(
            document_rows.version_row(
                document_id=document_id,
                version=1,
                patient_id=patient_id,
                status="current",
                security_labels=" ",
                binary_id=binary_id,
                resource_ciphertext=ciphertext,
                resource_dek=wrapped,
                kek_id=kek_id,
                created_by_role="professional",
                created_by=AUTHOR_IDNPS,
                created_at=created,
            )
        )
        self._audit(batch, patient_id, "DocumentReference", document_id, "document:create", created)

    # -- audit ---------------------------------------------------------------------------

    def _audit(
        self,
        batch: _Batch,
        patient_id: str,
        resource_type: str,
        resource_id: str,
        permission: str,
        occurred_at: datetime,
    ) -> None:
        """As AccessService.authorize then AuditService.append, for a professional feeding
        the record."""
        if patient_id not in batch.heads:
            batch.heads[patient_id] = (0, GENESIS)
            batch.started[patient_id] = 0
        seq, previous = batch.heads[patient_id]
        # What the hash covers, None where not named: the professional feeds the record with
        # no delegation, client, token or address on the entry.
        fields: dict[str, Any] = dict.fromkeys(HASHED_COLUMNS) | {
            "chain_key": patient_id,
            "chain_seq": seq + 1,
            "occurred_at": occurred_at,
            "patient_id": patient_id,
            "action": "C",
            "outcome": "success",
            "purpose": "TREAT",
            "actor_role": "professional",
            "actor_id": AUTHOR_IDNPS,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "detail": {
                "permission": permission,
                "reason": "feeding the record",
                "basis": "feeding",
            },
        }
        digest = entry_hash(previous, canonical_fields(**fields))
        batch.audit.append(
            fields
            | {
                "detail": json.dumps(fields["detail"]),
                AuditEntry.prev_hash.key: previous,
                AuditEntry.entry_hash.key: digest,
            }
        )
        batch.heads[patient_id] = (seq + 1, digest)

    def _past(self) -> datetime:
        """Creation times spread over five years, so that the index holds them in no
        particular order relative to patients."""
        return self._now - timedelta(seconds=self._random.uniform(60, 5 * 365 * 86400))

    # -- writing -------------------------------------------------------------------------

    def _submit(self, batch: _Batch) -> None:
        """Hand the batch to the writer thread, which copies it while the next one is
        built (psycopg lets go of the GIL while PostgreSQL works)."""
        self._heads.update(batch.heads)
        if self._writer is None:
            self._writer = _Writer(self._write)
        self._writer.put(batch)

    def _drain(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def _write(self, batch: _Batch) -> None:
        with self.connect() as connection:
            self._check_chains(connection, batch)
            # Each chain's audit log, as AuditService.append assigns it (docs/audit.md).
            logs = max(repository.audit_log_count(connection), 1)
            built = {
                table: _copy_rows(rows)
                for table, rows in (
                    ("blob_chunks", batch.blob_chunks),
                    ("binaries", batch.binaries),
                    ("documents", batch.documents),
                    ("document_versions", batch.versions),
                    # The reference table of documents and binaries (docs/scaling.md).
                    (
                        "resource_patients",
                        document_rows.owner_rows(batch.binaries, batch.documents),
                    ),
                    (
                        "audit_entries",
                        [
                            entry | {AuditEntry.log_id.key: chain_number(entry["chain_key"]) % logs}
                            for entry in batch.audit
                        ],
                    ),
                )
                if rows
            }
            built |= {
                table: (COLUMNS[table], rows)
                for table, rows in (
                    ("patients", batch.patients),
                    ("patient_keys", batch.patient_keys),
                    ("patient_ins", [(row[1], row[0]) for row in batch.patients]),
                )
                if rows
            }
            with connection.cursor() as cursor:
                for table in _COPY_ORDER:
                    if table not in built:
                        continue
                    repository.copy_rows(cursor, table, *built[table])
                repository.upsert_chain_heads(
                    cursor,
                    [
                        (key, seq, digest, chain_number(key) % logs)
                        for key, (seq, digest) in batch.heads.items()
                    ],
                )

    @staticmethod
    def _check_chains(connection: psycopg.Connection[Any], batch: _Batch) -> None:
        """The batch continues each chain from the head it read; under the heads' locks,
        make sure nobody moved one since (the store must not be written meanwhile)."""
        for key, last_seq in repository.lock_chain_heads(connection, list(batch.heads)):
            if last_seq != batch.started[key]:
                raise VaultError("the store was written to while it was being filled")


class _Writer:
    """One background thread writing batches in order; its first failure is raised by
    the next ``put`` or by ``close``."""

    def __init__(self, write: Callable[[_Batch], None]) -> None:
        self._write = write
        self._queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(batch)
                except BaseException as error:  # noqa: BLE001 - handed to the caller
                    self._error = error

    def put(self, batch: _Batch) -> None:
        self._raise()
        self._queue.put(batch)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def claim_database(database_url: str) -> None:
    """Refuse a database that holds anything but a bench store: the benchmark adds
    thousands of made-up patients. An empty database becomes a bench store."""
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as connection:
        name, comment = repository.database_comment(connection)
        if comment == MARKER:
            return
        vault_schema, table_count = repository.schema_state(connection)
        holds_patients = bool(vault_schema and repository.holds_patients(connection))
        if holds_patients or (table_count and not vault_schema):
            raise VaultError(
                f"database {name} holds data and is not a bench store; "
                "point VAULT_DATABASE_URL at an empty database"
            )
        repository.comment_database(connection, name, MARKER)
