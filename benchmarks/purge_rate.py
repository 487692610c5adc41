"""Purge rate: RECORDS closed records of DOCUMENTS documents each, all asking for early
deletion, crypto-shredded by the purge job (`vault records purge`); prints the records and
documents shredded per second.

    .venv/bin/python benchmarks/purge_rate.py [--records 200] [--documents 5]

Runs against a database it creates beside the test database (VAULT_TEST_ADMIN_DSN, default
postgresql://postgres@127.0.0.1:5432/test) and drops at the end. The records are made and
closed over HTTP (not timed); the purge is timed alone, as the command runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg

ADMIN_URL = os.environ.get("VAULT_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200, help="closed records to purge")
    parser.add_argument("--documents", type=int, default=5, help="documents per record")
    args = parser.parse_args()
    # The tests' small builders (tokens, patients, documents) make the records.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    from fastapi.testclient import TestClient  # noqa: PLC0415

    from tests.factories import DOCTOR, Tokens, create_patient, publish  # noqa: PLC0415
    from vault.api.app import create_app  # noqa: PLC0415
    from vault.migrations import upgrade  # noqa: PLC0415
    from vault.models.base import utcnow  # noqa: PLC0415
    from vault.services import build_services  # noqa: PLC0415
    from vault.services.records import purger  # noqa: PLC0415
    from vault.settings import Settings  # noqa: PLC0415

    name = f"vault_purge_bench_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    work = Path(tempfile.mkdtemp(prefix="vault-purge-bench-"))
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        settings = Settings(
            database_url=f"{base}/{name}",
            data_dir=work / "data",
            base_url="http://testserver",
            refusal_limit=1_000_000,
        )
        upgrade(settings.database_url)
        services = build_services(settings)
        tokens = Tokens(services.issuer)
        doctor = tokens.professional(DOCTOR)
        with TestClient(create_app(settings, services)) as client:
            for seed in range(args.records):
                patient_id, ins_value = create_patient(client, tokens, seed=10_000 + seed)
                for number in range(args.documents):
                    publish(client, doctor, patient_id, f"%PDF-1.7 {seed} {number}".encode())
                closed = client.post(
                    "/api/patients/me/closure",
                    json={"deleteNow": True},
                    headers=tokens.patient(ins_value),
                )
                assert closed.status_code == 201, closed.text
        job = purger(services)
        later = utcnow() + timedelta(days=services.settings.early_deletion_days, seconds=1)
        started = time.perf_counter()
        stats = job.run(now=later)
        elapsed = time.perf_counter() - started
        services.close()
        figures = {
            "records": stats.shredded,
            "documents": stats.documents,
            "seconds": round(elapsed, 3),
            "purge_records_per_s": round(stats.shredded / elapsed, 1),
            "purge_documents_per_s": round(stats.documents / elapsed, 1),
            "load_1min": os.getloadavg()[0],
        }
        print(json.dumps(figures))
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
