"""Taking everything away: an export over HTTP reads back byte-identical, carries the
FHIR Bundle, the policy, the history with its proofs and an offline index; `vault audit
verify-export` passes on it and fails on any tampered copy; only the requester downloads
it; one at a time, a few a day; encrypted while it waits; audited."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from typer.testing import CliRunner

from tests.access.policy_support import add_professional, audit_entries
from tests.factories import (
    DOCTOR,
    OTHER_DOCTOR,
    Tokens,
    create_patient,
    document_reference,
    provide_bundle,
)
from vault.audit.signing import NoteSigner
from vault.cli import app as cli
from vault.models import AuditNotification, RecordExport
from vault.models.base import utcnow
from vault.services.exports import export_worker

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3 compte rendu d'hospitalisation\n" + bytes(range(256)) * 40
TEXT = "Résultats: glycémie 1,02 g/L".encode()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x01\x02" * 5000
CDA = b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"><title>CR</title></ClinicalDocument>'


def _publish(
    client, headers, patient_id, content, content_type, title, type_code="11502-2", labels=()
):
    resource = document_reference(
        {"reference": f"Patient/{patient_id}"},
        content,
        content_type=content_type,
        type_code=type_code,
        labels=labels,
    )
    resource["content"][0]["attachment"]["title"] = title
    response = client.post("/fhir/DocumentReference", json=resource, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def record(client, tokens):
    """A record with documents of every kind, from a professional, a submission set and
    the patient; a care team member; and one result the patient may not see yet."""
    patient_id, ins_value = create_patient(client, tokens, seed=71)
    own = tokens.patient(ins_value)
    doctor = tokens.professional(DOCTOR)
    originals = {
        _publish(
            client, doctor, patient_id, PDF, "application/pdf", "Compte rendu <b>opératoire</b>"
        )["id"]: PDF,
        _publish(client, doctor, patient_id, TEXT, "text/plain", "Résultats", "11502-2")[
            "id"
        ]: TEXT,
        _publish(client, own, patient_id, PNG, "image/png", "Photo ordonnance", "57833-6")[
            "id"
        ]: PNG,
    }
    submitted = client.post(
        "/fhir",
        json=provide_bundle({"reference": f"Patient/{patient_id}"}, [(CDA, "text/xml")]),
        headers=doctor,
    )
    assert submitted.status_code == 200, submitted.text
    cda_id = next(
        entry["response"]["location"].split("/")[1]
        for entry in submitted.json()["entry"]
        if entry["response"]["location"].startswith("DocumentReference/")
    )
    originals[cda_id] = CDA
    hidden = _publish(
        client,
        doctor,
        patient_id,
        b"pending result",
        "text/plain",
        "Hidden",
        labels=("INVISIBLE_PATIENT",),
    )
    assert add_professional(client, own, patient_id, "/care-team", OTHER_DOCTOR).status_code == 201
    client.get(
        f"/fhir/DocumentReference?patient={patient_id}", headers=tokens.professional(OTHER_DOCTOR)
    )
    return patient_id, ins_value, originals, hidden["id"]


def _export(client, services, headers, patient_id="me") -> tuple[str, bytes]:
    asked = client.post(f"/api/patients/{patient_id}/exports", headers=headers)
    assert asked.status_code == 202, asked.text
    location = asked.headers["Location"]
    assert location.startswith("http://testserver/api/patients/")
    path = location.removeprefix("http://testserver")
    assert client.get(path, headers=headers).json()["status"] == "queued"
    assert export_worker(services).run_once().built == 1
    status = client.get(path, headers=headers).json()
    assert (status["status"], status["progress"]) == ("ready", 100)
    download = client.get(status["archive"].removeprefix("http://testserver"), headers=headers)
    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "application/zip"
    return path, download.content


def _verify(tmp_path, content: bytes, *args: str):
    archive = tmp_path / "export.zip"
    archive.write_bytes(content)
    return CliRunner().invoke(cli, ["audit", "verify-export", str(archive), *args])


def _rewrite(content: bytes, name: str, change) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(content))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            target.writestr(item.filename, change(data) if item.filename == name else data)
    return out.getvalue()


def test_an_export_reads_back_byte_identical_and_its_history_verifies(
    client, tokens, services, record, tmp_path
):
    _, ins_value, originals, hidden_id = record
    _, content = _export(client, services, tokens.patient(ins_value))
    archive = zipfile.ZipFile(io.BytesIO(content))
    bundle = json.loads(archive.read("bundle.json"))
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "collection")
    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    assert kinds[0] == "Patient"
    assert {"Consent", "AuditEvent"} <= set(kinds)
    references = {
        entry["resource"]["id"]: entry["resource"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "DocumentReference"
    }
    assert set(references) == set(originals)
    assert hidden_id not in references
    for document_id, original in originals.items():
        attachment = references[document_id]["content"][0]["attachment"]
        assert "data" not in attachment
        name = attachment["url"]
        assert name.startswith("documents/2026-11-20_")
        assert archive.read(name) == original
    assert any(name.endswith("_compte-rendu-b-operatoire-b.pdf") for name in archive.namelist())
    index = archive.read("index.html").decode()
    assert "&lt;b&gt;opératoire&lt;/b&gt;" in index
    assert "<b>" not in index

    passed = _verify(tmp_path, content)
    assert passed.exit_code == 0, passed.output
    assert passed.stdout.startswith("ok: ")
    key = client.get("/audit/public-key", headers=tokens.patient(ins_value))
    assert key.status_code == 200, key.text
    verifier = (
        key.json()["verifierKey"] if "json" in key.headers["content-type"] else key.text.strip()
    )
    assert _verify(tmp_path, content, "--key", verifier).exit_code == 0


@pytest.mark.parametrize(
    ("name", "change"),
    [
        (
            "history/entries.jsonl",
            lambda data: data.replace(b'"outcome":"denied"', b'"outcome":"success"', 1).replace(
                b'"actorRole":"professional"', b'"actorRole":"patient"', 1
            ),
        ),
        ("history/entries.jsonl", lambda data: b"\n".join(data.split(b"\n")[1:])),
        ("history/checkpoint.txt", lambda data: data.replace(b"\n", b"\n\n", 1)),
        ("bundle.json", lambda data: data.replace(b'"action": "R"', b'"action": "D"', 1)),
        (
            "bundle.json",
            lambda data: data.replace(
                b'"resourceType": "AuditEvent"', b'"resourceType": "Basic"', 1
            ),
        ),
    ],
)
def test_verify_export_fails_on_a_tampered_copy(
    client, tokens, services, record, tmp_path, name, change
):
    _, ins_value, _, _ = record
    _, content = _export(client, services, tokens.patient(ins_value))
    tampered = _rewrite(content, name, change)
    assert tampered != content
    failed = _verify(tmp_path, tampered)
    assert failed.exit_code == 1, failed.output
    assert "export does not verify" in failed.stderr


def test_verify_export_fails_on_a_changed_document_or_another_key(
    client, tokens, services, record, tmp_path
):
    _, ins_value, _, _ = record
    _, content = _export(client, services, tokens.patient(ins_value))
    document = next(
        n for n in zipfile.ZipFile(io.BytesIO(content)).namelist() if n.endswith(".pdf")
    )
    changed = _rewrite(content, document, lambda data: data[:-1] + b"X")
    assert _verify(tmp_path, changed).exit_code == 1
    stranger = NoteSigner("testserver/audit", Ed25519PrivateKey.generate()).verifier.verifier_key
    assert _verify(tmp_path, content, "--key", stranger).exit_code == 1
    assert _verify(tmp_path, b"not a zip").exit_code == 1


def test_only_the_requester_sees_or_downloads_the_export(client, tokens, services, record):
    patient_id, ins_value, _, _ = record
    path, _ = _export(client, services, tokens.patient(ins_value))
    path = path.replace("/me/", f"/{patient_id}/")
    _, other_ins = create_patient(client, tokens, seed=72)
    for headers in (
        tokens.patient(other_ins),
        tokens.professional(OTHER_DOCTOR),
        tokens.caregiver("caregiver-1"),
        tokens.operator(),
    ):
        assert client.get(path, headers=headers).status_code == 404
        assert client.get(path + "/archive", headers=headers).status_code == 404
        assert (
            client.post(f"/api/patients/{patient_id}/exports", headers=headers).status_code == 404
        )


def test_one_export_at_a_time_and_a_few_a_day(client, tokens, services, record):
    _, ins_value, _, _ = record
    own = tokens.patient(ins_value)
    assert client.post("/api/patients/me/exports", headers=own).status_code == 202
    again = client.post("/api/patients/me/exports", headers=own)
    assert again.status_code == 409
    assert again.json()["resourceType"] == "OperationOutcome"
    export_worker(services).run_once()
    assert client.post("/api/patients/me/exports", headers=own).status_code == 202
    export_worker(services).run_once()
    assert client.post("/api/patients/me/exports", headers=own).status_code == 202
    export_worker(services).run_once()
    limited = client.post("/api/patients/me/exports", headers=own)
    assert limited.status_code == 429
    assert limited.json()["resourceType"] == "OperationOutcome"


def test_the_archive_is_encrypted_while_it_waits_and_gone_after_it_expires(
    client, tokens, services, settings, record
):
    _, ins_value, originals, _ = record
    own = tokens.patient(ins_value)
    path, _ = _export(client, services, own)
    export_id = path.rsplit("/", 1)[1]
    stored = (settings.effective_export_dir / f"{export_id}.zip.sealed").read_bytes()
    for original in originals.values():
        assert original[:200] not in stored
    assert b"bundle.json" not in stored
    assert (
        export_worker(services).expire(
            utcnow() + timedelta(hours=settings.export_ttl_hours, minutes=1)
        )
        == 1
    )
    assert not (settings.effective_export_dir / f"{export_id}.zip.sealed").exists()
    assert client.get(path, headers=own).json()["status"] == "expired"
    gone = client.get(path + "/archive", headers=own)
    assert gone.status_code == 410
    with services.session_factory() as session:
        assert (
            session.scalar(select(RecordExport).where(RecordExport.id == export_id)).wrapped_dek
            is None
        )


def test_following_an_export_s_status_adds_no_entry_but_a_refused_look_is_recorded(
    client, tokens, services, record
):
    """A patient's app polls the job while it is built: each poll is decided, none is put on
    record (a job's status is no health data), while the request, the build and the
    download are; a look refused by the policy is recorded as every refusal is."""
    patient_id, ins_value, _, _ = record
    own = tokens.patient(ins_value)
    asked = client.post("/api/patients/me/exports", headers=own)
    assert asked.status_code == 202, asked.text
    path = asked.headers["Location"].removeprefix("http://testserver")

    def export_entries() -> list[tuple[str, str | None]]:
        return [
            (e.outcome, e.detail.get("stage"))
            for e in audit_entries(services, patient_id)
            if e.detail.get("permission") == "record:export"
        ]

    for _ in range(5):
        assert client.get(path, headers=own).json()["status"] == "queued"
    assert export_entries() == [("success", "requested")]

    export_id = path.rsplit("/", 1)[1]
    refused = client.get(
        f"/api/patients/{patient_id}/exports/{export_id}", headers=tokens.professional(DOCTOR)
    )
    assert refused.status_code == 404
    assert export_entries() == [("success", "requested"), ("denied", "status")]

    assert export_worker(services).run_once().built == 1
    status = client.get(path, headers=own).json()
    assert status["status"] == "ready"
    download = client.get(status["archive"].removeprefix("http://testserver"), headers=own)
    assert download.status_code == 200
    assert export_entries() == [
        ("success", "requested"),
        ("denied", "status"),
        ("success", "built"),
        ("success", "downloaded"),
    ]


def test_an_export_is_audited_asked_built_downloaded_and_every_read_is_decided(
    client, tokens, services, record
):
    patient_id, ins_value, originals, _ = record
    path, _ = _export(client, services, tokens.patient(ins_value))
    export_id = path.rsplit("/", 1)[1]
    entries = audit_entries(services, patient_id)
    stages = [
        e.detail.get("stage") for e in entries if e.detail.get("permission") == "record:export"
    ]
    assert {"requested", "built", "downloaded"} <= set(stages)
    built = next(e for e in entries if e.detail.get("stage") == "built")
    content_reads = {
        e.detail.get("document")
        for e in entries
        if e.detail.get("permission") == "document:content"
        and e.id < built.id
        and e.actor_role == "patient"
        and e.outcome == "success"
    }
    assert set(originals) <= content_reads
    with services.session_factory() as session:
        ready = session.query(AuditNotification).filter_by(kind="export-ready").one()
    assert ready.dedupe_key == f"export:{export_id}"


DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def _published() -> dict:
    """docs/audit.md's verification code and its export check, run exactly as published."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)
    namespace: dict = {}
    exec(blocks[0], namespace)
    exec(next(block for block in blocks if "def check_export" in block), namespace)
    return namespace


def test_the_documented_procedure_checks_an_export_with_standard_tools(
    client, tokens, services, record, tmp_path
):
    _, ins_value, _, _ = record
    _, content = _export(client, services, tokens.patient(ins_value))
    key = client.get("/audit/public-key", headers=tokens.patient(ins_value)).json()
    archive = tmp_path / "dossier.zip"
    archive.write_bytes(content)
    check = _published()["check_export"]
    count = check(str(archive), key["verifierKey"], "testserver/audit")
    assert count > 0
    lines = zipfile.ZipFile(io.BytesIO(content)).read("history/entries.jsonl")
    assert count == len(lines.splitlines())
    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(
        _rewrite(
            content,
            "history/entries.jsonl",
            lambda data: data.replace(b'"purpose":"TREAT"', b'"purpose":"ETREAT"', 1),
        )
    )
    with pytest.raises(ValueError, match="does not match its hash"):
        check(str(tampered), key["verifierKey"], "testserver/audit")


def test_vault_exports_build_builds_what_is_queued(client, tokens, settings, record, monkeypatch):
    _, ins_value, _, _ = record
    own = tokens.patient(ins_value)
    path = client.post("/api/patients/me/exports", headers=own).headers["Location"]
    for name, value in {
        "VAULT_DATABASE_URL": settings.database_url,
        "VAULT_DATA_DIR": str(settings.data_dir),
        "VAULT_BASE_URL": settings.base_url,
    }.items():
        monkeypatch.setenv(name, value)
    from vault.settings import get_settings  # noqa: PLC0415

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["exports", "build", "--once"])
        refused = CliRunner().invoke(cli, ["notifications", "send", "--once"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "built 1, failed 0, expired 0"
    assert (
        client.get(path.removeprefix("http://testserver"), headers=own).json()["status"] == "ready"
    )
    # E-mail is off in this configuration: the command says so and fails.
    assert refused.exit_code == 1
    assert "VAULT_SMTP_HOST" in refused.stderr


def test_a_legal_representative_exports_what_they_may_see_and_only_they_download_it(
    client, tokens, services, record
):
    patient_id, ins_value, originals, _ = record
    operator = Tokens._headers(tokens.issuer.mint("operator", "ops", scope="system/Consent.u"))
    registered = client.post(
        f"/api/patients/{patient_id}/policy/representatives",
        json={
            "representative": {"system": "urn:vault:caregiver", "value": "parent-1"},
            # The record's holder is an adult: a representative needs a named measure.
            "measure": {"type": "tutelle", "reference": "TJ Lyon RG 26/01234"},
        },
        headers=operator,
    )
    assert registered.status_code == 201, registered.text
    parent = tokens.caregiver("parent-1")
    path, content = _export(client, services, parent, patient_id)
    names = zipfile.ZipFile(io.BytesIO(content)).namelist()
    assert len([name for name in names if name.startswith("documents/")]) == len(originals)
    # The patient did not ask for this one: for them it does not exist.
    own = tokens.patient(ins_value)
    assert client.get(path, headers=own).status_code == 404
    assert client.get(path + "/archive", headers=own).status_code == 404
    reads = [
        e
        for e in audit_entries(services, patient_id)
        if e.detail.get("permission") == "document:content"
        and e.actor_role == "legal-representative"
    ]
    # A representative reads in their own name (issue 12, item 1), not as a caregiver.
    assert {e.actor_id for e in reads} == {"caregiver:parent-1"}
    assert {e.purpose for e in reads} == {"PWATRNY"}


def test_an_archive_missing_from_disk_is_gone_not_an_error(
    client, tokens, services, settings, record
):
    _, ins_value, _, _ = record
    own = tokens.patient(ins_value)
    path, _ = _export(client, services, own)
    export_id = path.rsplit("/", 1)[1]
    # As after a restore: the rows come back, the archives (never backed up) do not.
    (settings.effective_export_dir / f"{export_id}.zip.sealed").unlink()
    gone = client.get(path + "/archive", headers=own)
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"


def test_progress_is_visible_while_the_export_builds(client, tokens, services, record):
    from vault.exports.service import ExportWorker  # noqa: PLC0415

    _, ins_value, originals, _ = record
    own = tokens.patient(ins_value)
    path = client.post("/api/patients/me/exports", headers=own).headers["Location"]
    path = path.removeprefix("http://testserver")
    seen: list[tuple[int, str]] = []

    class Watched(ExportWorker):
        def _progress(self, patient_id: str, job_id: str, percent: int) -> None:
            super()._progress(patient_id, job_id, percent)
            # What the patient's app polling the job would read at this moment.
            status = client.get(path, headers=own).json()
            seen.append((status["progress"], status["status"]))

    base = export_worker(services)
    worker = Watched(services.session_factory, services.exports, base._builder, services.keys)
    assert worker.run_once().built == 1
    percents = [percent for percent, _ in seen]
    assert len(percents) >= len(originals) - 1
    assert percents == sorted(percents)
    assert all(status == "building" for _, status in seen)
    assert 0 < percents[-1] <= 99
    assert client.get(path, headers=own).json()["progress"] == 100
