"""Profile the server under the benchmark's load: starts a server as ``vault bench`` does,
drives one workload against it, and records each worker with py-spy (GIL-holding samples
only, so waits on PostgreSQL do not show). Needs py-spy (``pip install py-spy``) and an
existing bench store (run ``vault bench --quick`` once first).

    VAULT_DATABASE_URL=... python benchmarks/profile_server.py ingest|reads|binary [seconds]

``binary`` is 8 clients downloading 100 KB documents, as ``vault bench`` times them.

Writes one speedscope file per worker to /tmp/vault-profile-<pid>.json and prints the
functions that hold the most samples.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from vault.bench import load as bench_load
from vault.bench.ingest import ITI105, Ingest, iti65
from vault.bench.reads import Probe, run_reads
from vault.bench.runner import TOKEN_TTL
from vault.bench.server import Server
from vault.bench.store import Shape, StoreLoader
from vault.bench.workload import AUTHOR_IDNPS, Content, ins_for, pdf_document
from vault.identity.tokens import EmbeddedIssuer
from vault.services import build_services
from vault.settings import get_settings


def main() -> None:
    workload = sys.argv[1] if len(sys.argv) > 1 else "ingest"
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    settings = get_settings()
    services = build_services(settings)
    loader = StoreLoader(settings.effective_database_url, services.key_provider, Shape(0, 0))
    issuer = EmbeddedIssuer(settings.data_dir, settings.issuer, settings.token_audience)
    log = Path(tempfile.gettempdir()) / "vault-bench-server.log"
    with Server(settings, workers, log) as server:
        if workload == "ingest":
            token = issuer.mint("professional", AUTHOR_IDNPS, profession="10", ttl=TOKEN_TTL)
            contents = [Content.of(pdf_document(100_000, n)) for n in range(4)]
            ingest = Ingest(server.base_url, token, loader.filler_patients(500), contents)
            ingest.run([ITI105, iti65(1)], 8, 30, max_requests=32)

            def load() -> None:
                result = ingest.run([ITI105, iti65(1)], 8, seconds + 2, cpu=server.cpu_seconds)
                print(
                    f"{result.documents_per_s:.1f} documents/s, "
                    f"{result.server_cpu_ms_per_document:.2f} ms server CPU per document"
                )
        elif workload == "binary":
            binaries = loader.probe_binaries()
            readers = [
                bench_load.Reader(
                    patient_id,
                    issuer.mint("patient", ins_for(n), ttl=TOKEN_TTL),
                    0,
                    tuple(binaries[patient_id]),
                    loader.probe_sha1,
                )
                for n, patient_id in loader.probe_patients().items()
            ]

            def load() -> None:
                result = bench_load.run_load(
                    server.base_url,
                    [bench_load.Client((("binary", bench_load.download(readers)),))] * 8,
                    seconds=seconds + 2,
                    warmup=10,
                    server_cpu=server.cpu_seconds,
                )
                print(bench_load.describe(result, "binary", "binary"))
        else:
            binaries = loader.probe_binaries()
            probes = [
                Probe(
                    patient_id,
                    issuer.mint("patient", ins_for(n), ttl=TOKEN_TTL),
                    tuple(binaries[patient_id]),
                )
                for n, patient_id in loader.probe_patients().items()
            ]

            def load() -> None:
                result = run_reads(
                    server.base_url, probes, loader.probe_sha1, 10, requests=seconds * 20, clients=2
                )
                print(f"search {result.search}, binary {result.binary}")

        driver = threading.Thread(target=load)
        driver.start()
        outputs = []
        spies = []
        for pid in server.worker_pids():
            out = Path(tempfile.gettempdir()) / f"vault-profile-{pid}.txt"
            outputs.append(out)
            spies.append(
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--gil",
                        "-p",
                        str(pid),
                        "-d",
                        str(seconds),
                        "-r",
                        "250",
                        "-f",
                        "raw",
                        "-o",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for process in spies:
            process.wait()
        driver.join()
    summarise(outputs)


def summarise(paths: list[Path], top: int = 45) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            samples = int(count)
            total += samples
            for frame in set(stack.split(";")):
                name, _, where = frame.partition(" (")
                inclusive[f"{name} ({where.split('/')[-1]}"] += samples
    print(f"{total} samples holding the GIL")
    for frame, samples in inclusive.most_common(top):
        print(f"{100 * samples / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
