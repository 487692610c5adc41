"""One benchmark run, start to end, and how its results are shown.

The order matters: reads are timed at each store size before the ingest adds to it;
the 50 MB download is timed on a fresh server so that the ingest's memory does not hide
it; key rotation comes last, once no server holds keys.
"""

from __future__ import annotations

import os
import platform
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from vault.bench import load, operations
from vault.bench.ingest import ITI105, Ingest, IngestResult, RawFloor, iti65
from vault.bench.reads import (
    DEFAULT_COUNT,
    Probe,
    ReadResult,
    plan_shape,
    plan_uses_index,
    run_reads,
    search_plan,
)
from vault.bench.repository import psycopg_url, server_version
from vault.bench.server import Server
from vault.bench.stats import RssSampler, postgres_cpu, postgres_cpu_since
from vault.bench.store import Shape, StoreLoader, claim_database
from vault.bench.workload import AUTHOR_IDNPS, KB, MB, Content, ins_for, pdf_document
from vault.errors import VaultError
from vault.identity.tokens import EmbeddedIssuer
from vault.migrations import upgrade
from vault.services import Services, build_services
from vault.settings import Settings

TOKEN_TTL = 24 * 3600
# Requests each read client makes before the timed ones: a fresh server's connections,
# prepared statements and key caches fill on the first few hundred.
READ_WARMUP = 200

# The patient with a long record: a number no other bench patient has.
LONG_RECORD_PATIENT = 99_999_999

# Targets for this 2-core machine (issues 6 and 15); the sizing in docs/performance.md.
TARGETS: dict[str, tuple[str, float]] = {
    "ingest_docs_per_s": (">=", 400),
    "search_p99_ms": ("<=", 20),
    "binary_p99_ms": ("<=", 15),
    "audit_verify_entries_per_s": (">=", 100_000),
    "search_big_to_small_p50_ratio": ("<=", 1.5),
    "search_p99_ms_8_clients": ("<=", 50),
    "binary_per_s_8_clients": (">=", 1000),
    "binary_p99_ms_8_clients": ("<=", 20),
    "mixed_read_p99_ms": ("<=", 50),
}


@dataclass(frozen=True)
class Plan:
    name: str
    # Store sizes (documents) at which reads are timed; one patient per ten documents.
    stages: tuple[int, ...]
    ingest_seconds: float
    batched_seconds: float
    raw_seconds: float
    read_requests: int
    clients: int = 8
    # Concurrent readers in the read phases.
    read_clients: int = 8
    # How long each phase of concurrent reads (and the mixed load) is timed.
    read_seconds: float = 20
    # Searches timed one at a time, on small records and on the long one.
    single_client_searches: int = 500
    # Documents of the patient with a long record.
    long_record: int = 10_000
    # Writers beside the readers in the mixed load.
    mixed_writers: int = 4
    workers: int = 2
    batch_documents: int = 10
    large_document: int = 50 * MB
    document_size: int = 100 * KB
    probes: int = 100
    probe_documents: int = 10
    filler_size: int = 8 * KB

    def shape(self, documents: int) -> Shape:
        return Shape(
            documents=documents,
            patients=max(self.probes + 1, documents // 10),
            probes=self.probes,
            probe_documents=self.probe_documents,
            probe_size=self.document_size,
            filler_size=self.filler_size,
        )


QUICK = Plan(
    "quick",
    stages=(10_000,),
    ingest_seconds=12,
    batched_seconds=5,
    raw_seconds=5,
    read_requests=200,
    read_seconds=5,
    single_client_searches=100,
)
FULL = Plan(
    "full",
    stages=(10_000, 100_000, 1_000_000),
    ingest_seconds=60,
    batched_seconds=30,
    raw_seconds=30,
    read_requests=2000,
)


def machine() -> dict[str, Any]:
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return {
        "cpus": os.cpu_count() or 0,
        "memory_gb": round(memory_kb / 1e6, 1),
        "python": platform.python_version(),
        # What else the machine was doing: the benchmark shares it.
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }


class Run:
    def __init__(
        self, settings: Settings, plan: Plan, progress: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.say = progress or (lambda _message: None)
        self.results: dict[str, Any] = {"mode": plan.name}
        self.content = Content.of(pdf_document(plan.document_size, 20))
        self.log_path = Path(tempfile.gettempdir()) / "vault-bench-server.log"

    # -- the run ---------------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        started = time.perf_counter()
        url = self.settings.effective_database_url
        claim_database(url)
        upgrade(url)
        self.results.update(machine())
        self.results["postgres"] = self._postgres_version()
        services = build_services(self.settings)
        try:
            self._run(services)
        finally:
            services.close()
        self.results["elapsed_s"] = round(time.perf_counter() - started, 1)
        self.results["load_average_at_end"] = round(os.getloadavg()[0], 2)
        return self.results

    def _run(self, services: Services) -> None:
        plan = self.plan
        loader = StoreLoader(
            self.settings.effective_database_url,
            services.key_provider,
            plan.shape(plan.stages[0]),
            seed=20,
            progress=self.say,
        )
        loader.check_keys()
        server = Server(self.settings, plan.workers, self.log_path)
        issuer = EmbeddedIssuer(
            self.settings.data_dir, self.settings.issuer, self.settings.token_audience
        )
        loads = []
        stages: list[dict[str, Any]] = []
        try:
            for size in plan.stages:
                loader.shape = plan.shape(size)
                self.say(f"filling the store to {size} documents")
                loads.append(loader.fill(size, loader.shape.patients))
                if not server.running:
                    self.say(f"starting the server ({plan.workers} workers)")
                    server.start()
                stages.append(self._reads(services, loader, issuer, server))
            self.results["reads_by_size"] = stages
            largest = stages[-1]
            for key in ("search_p50_ms", "search_p99_ms", "binary_p50_ms", "binary_p99_ms"):
                self.results[key] = largest[key]
            self.results["documents_at_reads"] = largest["documents"]
            self.results["search_plan_uses_index"] = all(s["plan_uses_index"] for s in stages)
            added = sum(load.documents_added for load in loads)
            seconds = sum(load.seconds for load in loads)
            self.results["store_load_docs_per_s"] = round(added / seconds, 1) if seconds else 0
            self._shapes(services, loader, issuer, server)
            self._ingest(loader, issuer, server)
            large = self._large_ingest(loader, issuer, server)
        finally:
            server.stop()
        self._stream(issuer, large)
        self.say("verifying the audit log")
        audit = operations.time_audit_verification(services)
        if not audit.intact:
            raise VaultError("the audit log did not verify")
        self.results["audit_verify_entries_per_s"] = round(audit.entries_per_s)
        self.results["audit_entries_verified"] = audit.entries
        self.results["audit_checkpoint_s"] = round(audit.checkpoint_seconds, 2)
        self.say("rotating the master key")
        rotation = operations.time_key_rotation(services)
        self.results["key_rotation_patients"] = rotation.patients
        self.results["key_rotation_s"] = round(rotation.seconds, 2)
        self.results["key_rotation_patients_per_s"] = round(rotation.patients_per_s)
        patients, documents = loader.counts()
        self.results["documents_in_store"] = documents
        self.results["patients_in_store"] = patients
        self.results["rss_mb_peak"] = round(
            max(
                self.results["rss_mb_ingest_peak"],
                self.results["rss_mb_ingest_50mb_peak"],
                self.results["rss_mb_stream_50mb_peak"],
            ),
            1,
        )

    # -- phases ----------------------------------------------------------------------------

    def _reads(
        self, services: Services, loader: StoreLoader, issuer: EmbeddedIssuer, server: Server
    ) -> dict[str, Any]:
        probes = self._probes(loader, issuer)
        _patients, documents = loader.counts()
        # A running service takes its audit entries into the Merkle tree every minute; the
        # bulk-loaded ones would otherwise all be placed by the servers' checkpointer while
        # the reads are timed, which measures a one-off backlog, not a read.
        self.say("taking the loaded audit entries into the tree")
        services.audit_log.checkpoints.make(services.session_factory)
        self.say(f"timing reads at {documents} documents")
        result: ReadResult = run_reads(
            server.base_url,
            probes,
            loader.probe_sha1,
            min(self.plan.probe_documents, 20),
            requests=self.plan.read_requests,
            clients=self.plan.read_clients,
            warmup=min(READ_WARMUP, self.plan.read_requests),
        )
        with services.session_factory() as session:
            plan = search_plan(session, probes[0].patient_id)
        return {
            "documents": documents,
            "search_p50_ms": result.search.p50_ms,
            "search_p99_ms": result.search.p99_ms,
            "binary_p50_ms": result.binary.p50_ms,
            "binary_p99_ms": result.binary.p99_ms,
            "reads": result.search.count,
            "plan_uses_index": plan_uses_index(plan),
            "plan_shape": plan_shape(plan),
            "plan_ms": round(float(plan.get("Execution Time", 0.0)), 3),
        }

    def _shapes(
        self, services: Services, loader: StoreLoader, issuer: EmbeddedIssuer, server: Server
    ) -> None:
        """Reads at the shapes patients have: a long record beside the small ones, many
        readers at once, and readers while senders write."""
        plan = self.plan
        self.say(f"a patient with a long record: {plan.long_record} documents")
        long_id = loader.fill_long_record(LONG_RECORD_PATIENT, plan.long_record)
        services.audit_log.checkpoints.make(services.session_factory)
        page = min(plan.long_record, DEFAULT_COUNT)
        long_reader = load.Reader(
            long_id,
            issuer.mint("patient", ins_for(LONG_RECORD_PATIENT), ttl=TOKEN_TTL),
            page,
            (),
            "",
        )
        expected = min(plan.probe_documents, DEFAULT_COUNT)
        small = [
            load.Reader(
                probe.patient_id, probe.token, expected, probe.binary_ids, loader.probe_sha1
            )
            for probe in self._probes(loader, issuer)
        ]
        cpu = server.cpu_seconds
        # One client: what a search costs on a small record and on the long one, taken
        # in turn so that the machine's moods weigh on both alike.
        self.say("searches one at a time: small records and the long one")
        alone = load.run_load(
            server.base_url,
            [load.Client((("small", load.search(small)), ("long", load.search([long_reader]))))],
            requests=2 * plan.single_client_searches,
            warmup=20,
        )
        small_p50 = alone.summary("small").p50_ms
        long_p50 = alone.summary("long").p50_ms
        self.results["search_small_patient_p50_ms"] = small_p50
        self.results["search_big_patient_p50_ms"] = long_p50
        self.results["search_big_patient_p99_ms"] = alone.summary("long").p99_ms
        self.results["search_big_to_small_p50_ratio"] = (
            round(long_p50 / small_p50, 2) if small_p50 else 0.0
        )
        self.results["long_record_documents"] = plan.long_record
        readers = plan.read_clients
        self.say(f"searches: {readers} clients, {plan.read_seconds} s")
        searches = load.run_load(
            server.base_url,
            [
                load.Client((("search", load.search([*small, long_reader])),))
                for _ in range(readers)
            ],
            seconds=plan.read_seconds,
            warmup=10,
            server_cpu=cpu,
        )
        self._describe(searches, "search", f"{readers}_clients", "search")
        self.say(f"downloads: {readers} clients, {plan.read_seconds} s")
        downloads = load.run_load(
            server.base_url,
            [load.Client((("binary", load.download(small)),)) for _ in range(readers)],
            seconds=plan.read_seconds,
            warmup=10,
            server_cpu=cpu,
        )
        self._describe(downloads, "binary", f"{readers}_clients", "binary")
        writers = plan.mixed_writers
        self.say(f"mixed: {readers} readers and {writers} writers, {plan.read_seconds} s")
        token = issuer.mint("professional", AUTHOR_IDNPS, profession="10", ttl=TOKEN_TTL)
        ingest = Ingest(server.base_url, token, loader.filler_patients(1000), [self.content])

        def iti105_body(rng: random.Random) -> tuple[str, bytes, int]:
            path, body = ingest.body(ITI105, rng)
            return path, body, 1

        reads = (("search", load.search(small)), ("binary", load.download(small)))
        mixed = load.run_load(
            server.base_url,
            [load.Client(reads) for _ in range(readers)]
            + [load.Client((("ingest", load.post(iti105_body, token)),)) for _ in range(writers)],
            seconds=plan.read_seconds,
            warmup=5,
            server_cpu=cpu,
        )
        read_summary = mixed.summary("search", "binary")
        self.results.update(
            {
                "mixed_read_per_s": round(mixed.per_s("search", "binary"), 1),
                "mixed_read_p50_ms": read_summary.p50_ms,
                "mixed_read_p99_ms": read_summary.p99_ms,
                "mixed_search_p99_ms": mixed.summary("search").p99_ms,
                "mixed_binary_p99_ms": mixed.summary("binary").p99_ms,
                "mixed_ingest_docs_per_s": round(mixed.items["ingest"] / mixed.seconds, 1),
                "mixed_ingest_p99_ms": mixed.summary("ingest").p99_ms,
                "mixed_readers": readers,
                "mixed_writers": writers,
            }
        )

    def _describe(self, result: load.LoadResult, what: str, suffix: str, *names: str) -> None:
        """``what_per_s_suffix``, ``what_p50_ms_suffix``... and the CPU per operation."""
        for key, value in load.describe(result, what, *names).items():
            self.results[f"{key}_{suffix}"] = value

    def _probes(self, loader: StoreLoader, issuer: EmbeddedIssuer) -> list[Probe]:
        binaries = loader.probe_binaries()
        return [
            Probe(
                patient_id,
                issuer.mint("patient", ins_for(number), ttl=TOKEN_TTL),
                tuple(binaries[patient_id]),
            )
            for number, patient_id in loader.probe_patients().items()
        ]

    def _ingest(self, loader: StoreLoader, issuer: EmbeddedIssuer, server: Server) -> None:
        plan = self.plan
        token = issuer.mint("professional", AUTHOR_IDNPS, profession="10", ttl=TOKEN_TTL)
        patients = loader.filler_patients(1000)
        contents = [Content.of(pdf_document(plan.document_size, 100 + n)) for n in range(8)]
        ingest = Ingest(server.base_url, token, patients, contents)
        self.say("warming up the server")
        ingest.run([ITI105, iti65(1)], plan.clients, 30, max_requests=4 * plan.clients)
        self.say(f"ingest: {plan.clients} clients, ITI-105 and ITI-65, {plan.ingest_seconds} s")
        database_before = postgres_cpu()
        with RssSampler(server.worker_pids()) as sampler:
            mixed = ingest.run(
                [ITI105, iti65(1)], plan.clients, plan.ingest_seconds, cpu=server.cpu_seconds
            )
        self._ingest_results(mixed)
        self.results["ingest_postgres_cpu_ms_per_doc"] = _per_document(
            postgres_cpu_since(database_before), mixed.documents
        )
        self.results["rss_mb_ingest_peak"] = round(sampler.peak_mb, 1)
        self.say(f"ingest: ITI-65 bundles of {plan.batch_documents}, {plan.batched_seconds} s")
        batched = ingest.run(
            [iti65(plan.batch_documents)],
            plan.clients,
            plan.batched_seconds,
            cpu=server.cpu_seconds,
        )
        self.results["ingest_batched_docs_per_s"] = round(batched.documents_per_s, 1)
        self.results["ingest_batched_p99_ms"] = batched.summary().p99_ms
        self.results["ingest_batched_server_cpu_ms_per_doc"] = round(
            batched.server_cpu_ms_per_document, 2
        )
        self.say(f"raw floor: psycopg, {plan.clients} connections, {plan.raw_seconds} s")
        floor = RawFloor(psycopg_url(self.settings.effective_database_url))
        floor.prepare()
        database_before = postgres_cpu()
        try:
            raw = floor.run(patients, contents, plan.clients, plan.raw_seconds)
            # Its backends have exited by now: their CPU comes with the result; the rest
            # (WAL writer, checkpointer) from the processes still alive.
            self.results["raw_floor_postgres_cpu_ms_per_doc"] = _per_document(
                raw.backend_cpu_seconds + postgres_cpu_since(database_before), raw.documents
            )
        finally:
            floor.drop()
        self.results["raw_floor_docs_per_s"] = round(raw.documents_per_s, 1)
        self.results["raw_floor_p99_ms"] = raw.summary().p99_ms
        self.results["vault_to_floor_ratio"] = round(
            mixed.documents_per_s / raw.documents_per_s if raw.documents_per_s else 0.0, 3
        )

    def _ingest_results(self, mixed: IngestResult) -> None:
        overall = mixed.summary()
        self.results.update(
            {
                "ingest_docs_per_s": round(mixed.documents_per_s, 1),
                "ingest_documents": mixed.documents,
                "ingest_p50_ms": overall.p50_ms,
                "ingest_p99_ms": overall.p99_ms,
                "ingest_iti105_p50_ms": mixed.summary("iti105").p50_ms,
                "ingest_iti105_p99_ms": mixed.summary("iti105").p99_ms,
                "ingest_iti65_p50_ms": mixed.summary("iti65").p50_ms,
                "ingest_iti65_p99_ms": mixed.summary("iti65").p99_ms,
                "ingest_server_cpu_ms_per_doc": round(mixed.server_cpu_ms_per_document, 2),
                "ingest_client_cpu_ms_per_doc": round(mixed.client_cpu_ms_per_document, 2),
                "ingest_machine_cpu_ms_per_doc": round(mixed.machine_cpu_ms_per_document, 2),
                "ingest_clients": self.plan.clients,
                "server_workers": self.plan.workers,
            }
        )

    def _large_ingest(
        self, loader: StoreLoader, issuer: EmbeddedIssuer, server: Server
    ) -> tuple[str, str, Content]:
        size = self.plan.large_document
        self.say(f"ingesting a {size // MB} MB document")
        content = Content.of(pdf_document(size, 50))
        number, patient_id = next(iter(loader.probe_patients().items()))
        token = issuer.mint("professional", AUTHOR_IDNPS, profession="10", ttl=TOKEN_TTL)
        large = operations.ingest_large(server, token, patient_id, content)
        self.results["rss_mb_ingest_50mb_peak"] = round(large.ingest_rss_peak_mb, 1)
        self.results["ingest_50mb_s"] = round(large.ingest_seconds, 2)
        return large.binary_id, ins_for(number), content

    def _stream(self, issuer: EmbeddedIssuer, large: tuple[str, str, Content]) -> None:
        binary_id, ins, content = large
        self.say("streaming the large document from a fresh server")
        with Server(self.settings, 1, self.log_path) as fresh:
            token = issuer.mint("patient", ins, ttl=TOKEN_TTL)
            stream = operations.stream_large(fresh, token, binary_id, content)
        self.results["rss_mb_stream_50mb_peak"] = round(stream.rss_peak_mb, 1)
        self.results["rss_mb_stream_50mb_growth"] = round(
            stream.rss_peak_mb - stream.rss_baseline_mb, 1
        )
        self.results["stream_50mb_mb_per_s"] = round(stream.mb_per_s, 1)

    def _postgres_version(self) -> str:
        with psycopg.connect(psycopg_url(self.settings.effective_database_url)) as connection:
            return server_version(connection)


def run(settings: Settings, plan: Plan, progress: Callable[[str], None] | None = None) -> Any:
    if not settings.database_url.startswith("postgresql"):
        raise VaultError("vault bench runs against PostgreSQL: set VAULT_DATABASE_URL")
    return Run(settings, plan, progress).execute()


def with_overrides(plan: Plan, **changes: Any) -> Plan:
    return replace(plan, **{key: value for key, value in changes.items() if value is not None})


# -- showing the results ---------------------------------------------------------------------

ROWS: list[tuple[str, str, str]] = [
    ("documents_in_store", "documents in the store (end of run)", ""),
    ("patients_in_store", "patients in the store", ""),
    ("documents_at_reads", "documents when reads were timed", ""),
    ("ingest_docs_per_s", "ingest, ITI-105 + ITI-65, documents/s", ""),
    ("ingest_p50_ms", "ingest latency p50", "ms"),
    ("ingest_p99_ms", "ingest latency p99", "ms"),
    ("ingest_iti105_p99_ms", "ITI-105 latency p99", "ms"),
    ("ingest_iti65_p99_ms", "ITI-65 latency p99", "ms"),
    ("ingest_server_cpu_ms_per_doc", "server CPU per document", "ms"),
    ("ingest_postgres_cpu_ms_per_doc", "PostgreSQL CPU per document", "ms"),
    ("ingest_client_cpu_ms_per_doc", "load generator CPU per document", "ms"),
    ("ingest_machine_cpu_ms_per_doc", "whole machine's CPU per document", "ms"),
    ("ingest_batched_docs_per_s", "ingest, ITI-65 bundles of 10, documents/s", ""),
    ("ingest_batched_server_cpu_ms_per_doc", "server CPU per document in bundles", "ms"),
    ("raw_floor_docs_per_s", "raw PostgreSQL floor, documents/s", ""),
    ("raw_floor_postgres_cpu_ms_per_doc", "PostgreSQL CPU per document, floor", "ms"),
    ("vault_to_floor_ratio", "vault / floor", ""),
    ("search_p50_ms", "search one patient's documents p50", "ms"),
    ("search_p99_ms", "search one patient's documents p99", "ms"),
    ("binary_p50_ms", "download 100 KB document p50", "ms"),
    ("binary_p99_ms", "download 100 KB document p99", "ms"),
    ("search_plan_uses_index", "search plan uses (patient, created_at, id)", ""),
    ("search_small_patient_p50_ms", "search, 10-document record, 1 client, p50", "ms"),
    ("search_big_patient_p50_ms", "search, long record, 1 client, p50", "ms"),
    ("search_big_to_small_p50_ratio", "long record / small record, search p50", ""),
    ("search_per_s_8_clients", "search, 8 clients, requests/s", ""),
    ("search_p50_ms_8_clients", "search, 8 clients, p50", "ms"),
    ("search_p99_ms_8_clients", "search, 8 clients, p99", "ms"),
    ("search_server_cpu_ms_per_op_8_clients", "server CPU per search", "ms"),
    ("search_postgres_cpu_ms_per_op_8_clients", "PostgreSQL CPU per search", "ms"),
    ("search_client_cpu_ms_per_op_8_clients", "load generator CPU per search", "ms"),
    ("binary_per_s_8_clients", "download 100 KB, 8 clients, requests/s", ""),
    ("binary_p50_ms_8_clients", "download 100 KB, 8 clients, p50", "ms"),
    ("binary_p99_ms_8_clients", "download 100 KB, 8 clients, p99", "ms"),
    ("binary_server_cpu_ms_per_op_8_clients", "server CPU per download", "ms"),
    ("binary_postgres_cpu_ms_per_op_8_clients", "PostgreSQL CPU per download", "ms"),
    ("binary_client_cpu_ms_per_op_8_clients", "load generator CPU per download", "ms"),
    ("binary_machine_cpu_ms_per_op_8_clients", "whole machine's CPU per download", "ms"),
    ("mixed_read_per_s", "mixed load: reads/s", ""),
    ("mixed_read_p99_ms", "mixed load: read p99", "ms"),
    ("mixed_ingest_docs_per_s", "mixed load: ingest, documents/s", ""),
    ("mixed_ingest_p99_ms", "mixed load: ingest p99", "ms"),
    ("audit_verify_entries_per_s", "audit verification, entries/s", ""),
    ("audit_entries_verified", "audit entries verified", ""),
    ("key_rotation_patients_per_s", "key rotation, patients/s", ""),
    ("key_rotation_patients", "key rotation, patients", ""),
    ("rss_mb_ingest_peak", "peak RSS per worker, ingest", "MB"),
    ("rss_mb_ingest_50mb_peak", "peak RSS per worker, 50 MB ingest", "MB"),
    ("rss_mb_stream_50mb_peak", "peak RSS, streaming 50 MB out", "MB"),
    ("rss_mb_peak", "peak RSS overall", "MB"),
    ("store_load_docs_per_s", "bulk load of the store, documents/s", ""),
    ("load_average_at_start", "machine load average at start", ""),
    ("load_average_at_end", "machine load average at end", ""),
    ("elapsed_s", "run time", "s"),
]


def target_met(key: str, value: Any) -> str:
    if key not in TARGETS or not isinstance(value, int | float):
        return ""
    op, bound = TARGETS[key]
    ok = value >= bound if op == ">=" else value <= bound
    return f"{op} {bound:g}: {'met' if ok else 'NOT met'}"


def table(results: dict[str, Any]) -> str:
    lines = [
        f"vault bench ({results.get('mode')}): {results.get('cpus')} CPUs, "
        f"{results.get('memory_gb')} GB, PostgreSQL {results.get('postgres')}",
        "",
    ]
    width = max(len(label) for _, label, _ in ROWS)
    for key, label, unit in ROWS:
        if key not in results:
            continue
        value = results[key]
        shown = (
            f"{value:,}"
            if isinstance(value, int | float) and not isinstance(value, bool)
            else str(value)
        )
        lines.append(f"{label:<{width}}  {shown:>12} {unit:<2}  {target_met(key, value)}".rstrip())
    stages = results.get("reads_by_size") or []
    if len(stages) > 1:
        lines += ["", "reads by store size (ms):  documents  search p50/p99  download p50/p99"]
        for stage in stages:
            lines.append(
                f"{'':26}{stage['documents']:>10,}  {stage['search_p50_ms']:>6} / "
                f"{stage['search_p99_ms']:<6}  {stage['binary_p50_ms']:>6} / {stage['binary_p99_ms']}"
            )
    for stage in stages:
        if not stage["plan_uses_index"]:
            lines.append(f"search plan at {stage['documents']:,} documents: {stage['plan_shape']}")
    return "\n".join(lines)


def _per_document(cpu_seconds: float, documents: int) -> float:
    return round(1000 * cpu_seconds / documents, 2) if documents else 0.0
