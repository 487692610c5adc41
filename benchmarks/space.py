"""The patient's space's pages under load of a long record: the documents page and the
history page of a patient with 1,000 documents and 10,000 history entries, server time
(the app in process, no network), p50 / p95 / max over repeated requests.

    .venv/bin/python benchmarks/space.py [--documents 1000] [--entries 10000] [--samples 200]

Uses a fresh PostgreSQL database beside the test one (VAULT_TEST_ADMIN_DSN, default
postgresql://postgres@127.0.0.1:5432/test), dropped afterwards. Target: p95 <= 100 ms.
Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vault.api.app import create_app  # noqa: E402
from vault.identity.principal import Role  # noqa: E402
from vault.migrations import upgrade  # noqa: E402
from vault.services import build_services  # noqa: E402
from vault.settings import Settings  # noqa: E402
from vault.web import demo  # noqa: E402
from vault.web.signin import DEMO_PATIENT  # noqa: E402

ADMIN = os.environ.get("VAULT_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Timing:
    page: str
    samples: int
    p50_ms: float
    p95_ms: float
    max_ms: float


def timings(page: str, seconds: list[float]) -> Timing:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Timing(
        page,
        len(ordered),
        round(statistics.median(ordered) * 1000, 1),
        round(p95 * 1000, 1),
        round(ordered[-1] * 1000, 1),
    )


def seed(services, documents: int, entries: int) -> str:
    """The demo patient, ``documents`` documents from a professional, then the patient's
    own reads until the history holds ``entries`` entries."""
    patient = demo.principal(Role.PATIENT, DEMO_PATIENT.subject)
    doctor = demo.principal(Role.PROFESSIONAL, demo.DOCTOR.idnps, "10")
    with services.session_factory.begin() as session:
        record, _ = services.patients.ensure(
            session,
            services.access.actor(session, patient),
            {
                "resourceType": "Patient",
                "identifier": [{"system": demo.INS_SYSTEM, "value": DEMO_PATIENT.subject}],
                "name": [{"family": "Martin", "given": ["Camille"]}],
            },
            expression="Patient",
        )
        patient_id = record.id
    ids: list[str] = []
    body = demo.pdf("Compte rendu", ["Rien à signaler."])
    for start in range(0, documents, 100):
        with services.session_factory.begin() as session:
            actor = services.access.actor(session, doctor)
            for number in range(start, min(documents, start + 100)):
                resource = {
                    "resourceType": "DocumentReference",
                    "masterIdentifier": {
                        "system": "urn:ietf:rfc:3986",
                        "value": f"urn:oid:1.2.250.1.999.{number}",
                    },
                    "status": "current",
                    "type": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]},
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument",
                                    "code": "10",
                                }
                            ]
                        }
                    ],
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "date": f"20{10 + number % 16:02d}-{1 + number % 12:02d}-{1 + number % 28:02d}T10:00:00+01:00",
                    "author": [{"display": demo.DOCTOR.name}],
                    "content": [
                        {
                            "attachment": {
                                "contentType": "application/pdf",
                                "title": f"Compte rendu {number}",
                                "data": base64.b64encode(body).decode(),
                            }
                        }
                    ],
                }
                ids.append(services.ingestion.publish(session, actor, resource).id)
    with services.engine.connect() as connection:
        written = connection.exec_driver_sql(
            "SELECT count(*) FROM audit_entries WHERE patient_id = %(p)s", {"p": patient_id}
        ).scalar_one()
    remaining = max(0, entries - int(written))
    for start in range(0, remaining, 500):
        with services.session_factory.begin() as session:
            actor = services.access.actor(session, patient)
            for number in range(start, min(remaining, start + 500)):
                services.documents.read(session, actor, ids[number % len(ids)])
    return patient_id


def measure(documents: int, entries: int, samples: int) -> dict[str, object]:
    name = f"vault_bench_space_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    try:
        upgrade(url)
        with tempfile.TemporaryDirectory() as data_dir:
            settings = Settings(
                database_url=url, data_dir=Path(data_dir), base_url="https://testserver"
            )
            services = build_services(settings)
            try:
                started = time.perf_counter()
                patient_id = seed(services, documents, entries)
                seeded_in = time.perf_counter() - started
                results = pages(services, settings, patient_id, samples)
            finally:
                services.close()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "documents": documents,
        "history_entries_at_least": entries,
        "seeded_seconds": round(seeded_in, 1),
        "pages": [timing.__dict__ for timing in results],
    }


def pages(services, settings, patient_id: str, samples: int) -> list[Timing]:
    app = create_app(settings, services)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        home = client.get("/")
        token = CSRF.search(home.text).group(1)
        assert (
            client.post("/login/demo", data={"account": "patient", "csrf_token": token}).status_code
            == 303
        )
        base = f"/dossiers/{patient_id}"
        found = []
        second = client.get(f"{base}/documents").text
        cursor = re.search(r'apres=([^"&]+)', second)
        history = client.get(f"{base}/historique").text
        history_cursor = re.search(r'apres=([^"&]+)', history)
        for label, path in (
            ("documents, first page", f"{base}/documents"),
            (
                "documents, second page",
                f"{base}/documents?apres={cursor.group(1) if cursor else ''}",
            ),
            ("documents, one category", f"{base}/documents?categorie=10"),
            ("history, first page", f"{base}/historique"),
            (
                "history, second page",
                f"{base}/historique?apres={history_cursor.group(1) if history_cursor else ''}",
            ),
            ("history, professionals only", f"{base}/historique?role=professional"),
        ):
            for _ in range(5):  # warm-up
                client.get(path)
            seconds = []
            for _ in range(samples):
                started = time.perf_counter()
                response = client.get(path)
                seconds.append(time.perf_counter() - started)
                assert response.status_code == 200, (path, response.status_code)
            found.append(timings(label, seconds))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=10000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    arguments = parser.parse_args()
    results = measure(arguments.documents, arguments.entries, arguments.samples)
    if arguments.json:
        print(json.dumps(results))
        return
    print(
        f"patient's space: {results['documents']} documents, "
        f">= {results['history_entries_at_least']} history entries "
        f"(seeded in {results['seeded_seconds']} s)"
    )
    print(f"{'page':32} {'samples':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for row in results["pages"]:
        print(
            f"{row['page']:32} {row['samples']:>8} {row['p50_ms']:>8} {row['p95_ms']:>8} {row['max_ms']:>8}"
        )


if __name__ == "__main__":
    main()
