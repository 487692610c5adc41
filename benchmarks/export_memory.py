"""Export throughput and memory: a record of SIZE (default 1 GiB) of documents, exported
by the export worker in a fresh process; prints the archive build's throughput and the
process's peak RSS growth during the build (the budget: 100 MB for 1 GiB).

    .venv/bin/python benchmarks/export_memory.py [--mib 1024] [--document-mib 16]

Runs against a database it creates beside the test database (VAULT_TEST_ADMIN_DSN, default
postgresql://postgres@127.0.0.1:5432/test) and a file blob store in a temporary directory,
and drops both at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ADMIN_URL = os.environ.get("VAULT_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def build(settings_json: str) -> None:
    """The child: builds services, then the one queued export, and reports memory."""
    from vault.services import build_services  # noqa: PLC0415
    from vault.services.exports import export_worker  # noqa: PLC0415
    from vault.settings import Settings  # noqa: PLC0415

    services = build_services(Settings(**json.loads(settings_json)))
    worker = export_worker(services)
    # Everything imported and connected: what the build adds is measured from here.
    baseline = _kib("VmRSS")
    started = time.perf_counter()
    stats = worker.run_once()
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "built": stats.built,
                "seconds": elapsed,
                "baseline_kib": baseline,
                "peak_kib": _kib("VmHWM"),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="the record's content, MiB")
    parser.add_argument("--document-mib", type=int, default=16, help="each document's size, MiB")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        build(args.child)
        return

    name = f"vault_export_bench_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    work = Path(tempfile.mkdtemp(prefix="vault-export-bench-"))
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    values = {
        "database_url": f"{base}/{name}",
        "data_dir": str(work / "data"),
        "blob_store": f"file://{work / 'blobs'}",
        "base_url": "http://testserver",
        "max_body_bytes": 64 * 1024 * 1024,
        "export_daily_limit": 10,
    }
    try:
        count, ingest = _seed(values, args.mib, args.document_mib)
        child = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(values)],
            capture_output=True,
            text=True,
            check=True,
        )
        report = json.loads(child.stdout.strip().splitlines()[-1])
        _print(values, report, count * args.document_mib * 2**20, count, ingest)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        subprocess.run(["rm", "-rf", str(work)], check=False)


def _seed(values: dict, mib: int, document_mib: int) -> tuple[int, float]:
    """One patient with MIB of random documents from a professional, and an export asked."""
    from fastapi.testclient import TestClient  # noqa: PLC0415

    from tests.factories import DOCTOR, Tokens, create_patient, document_reference  # noqa: PLC0415
    from vault.api.app import create_app  # noqa: PLC0415
    from vault.migrations import upgrade  # noqa: PLC0415
    from vault.services import build_services  # noqa: PLC0415
    from vault.settings import Settings  # noqa: PLC0415

    upgrade(values["database_url"])
    settings = Settings(**values)
    services = build_services(settings)
    tokens = Tokens(services.issuer)
    size = document_mib * 1024 * 1024
    count = max(1, mib // document_mib)
    with TestClient(create_app(settings, services)) as client:
        patient_id, ins_value = create_patient(client, tokens, seed=7)
        started = time.perf_counter()
        for number in range(count):
            resource = document_reference(
                {"reference": f"Patient/{patient_id}"},
                os.urandom(size),
                content_type="application/pdf",
            )
            resource["content"][0]["attachment"]["title"] = f"Document {number}"
            response = client.post(
                "/fhir/DocumentReference", json=resource, headers=tokens.professional(DOCTOR)
            )
            assert response.status_code == 201, response.text[:200]
        ingest = time.perf_counter() - started
        asked = client.post("/api/patients/me/exports", headers=tokens.patient(ins_value))
        assert asked.status_code == 202, asked.text
    services.close()
    return count, ingest


def _print(values: dict, report: dict, content: int, count: int, ingest: float) -> None:
    from vault.models import RecordExport  # noqa: PLC0415
    from vault.services import build_services  # noqa: PLC0415
    from vault.settings import Settings  # noqa: PLC0415

    services = build_services(Settings(**values))
    with services.session_factory() as session:
        archive = session.query(RecordExport).one().archive_size or 0
    services.close()
    content_mib = content / 2**20
    growth = (report["peak_kib"] - report["baseline_kib"]) / 1024
    seconds = report["seconds"]
    print(
        f"record content    {content_mib:8.0f} MiB in {count} documents (ingested in {ingest:.0f} s)"
    )
    print(f"archive           {archive / 2**20:8.0f} MiB, built in {seconds:.1f} s")
    print(f"export throughput {content_mib / seconds:8.1f} MiB/s")
    print(f"baseline RSS      {report['baseline_kib'] / 1024:8.1f} MiB")
    print(f"peak RSS growth   {growth:8.1f} MiB (budget: 100 MiB for 1 GiB)")


if __name__ == "__main__":
    main()
