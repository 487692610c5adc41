"""`vault blobs sweep`: the operator's way to remove blobs left by crashes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.factories import Tokens, document_reference, ins, patient_resource
from vault.api.app import create_app
from vault.cli import app as cli
from vault.services import Services, build_services
from vault.settings import Settings, get_settings


@pytest.fixture
def blob_root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, blob_root: Path
) -> Iterator[None]:
    """The command reads its configuration from the environment, as in production."""
    monkeypatch.setenv("VAULT_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("VAULT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("VAULT_BLOB_STORE", blob_root.as_uri())
    monkeypatch.delenv("VAULT_ORPHAN_BLOB_GRACE_SECONDS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def vault(settings: Settings, services: Services, blob_root: Path) -> Iterator[Services]:
    # Depending on `services` empties the database after the test.
    built = build_services(settings.model_copy(update={"blob_store": blob_root.as_uri()}))
    yield built
    built.close()


def blob_path(root: Path, key: str) -> Path:
    return root / key[:2] / key[2:4] / key


def backdate(path: Path, seconds: int) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def publish(vault: Services) -> tuple[TestClient, dict[str, str], bytes]:
    tokens = Tokens(vault.issuer)
    client = TestClient(create_app(vault.settings, vault), raise_server_exceptions=False)
    ins_value = ins(7)
    created = client.post(
        "/fhir/Patient", json=patient_resource(ins_value), headers=tokens.patient(ins_value)
    )
    patient_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]
    content = b"%PDF-1.7 compte rendu operatoire"
    published = client.post(
        "/fhir/DocumentReference",
        json=document_reference({"reference": f"Patient/{patient_id}"}, content),
        headers=tokens.professional(),
    )
    assert published.status_code == 201, published.text
    binary = published.json()["content"][0]["attachment"]["url"]
    return client, {"url": f"/fhir/{binary}", **tokens.patient(ins_value)}, content


def orphan(vault: Services) -> str:
    key = uuid4().hex
    with vault.session_factory.begin() as session:
        vault.blobs.put(session, key, [b"ciphertext whose transaction never committed"])
    return key


def stored(root: Path) -> set[str]:
    return {path.name for path in root.glob("*/*/*")}


def test_sweep_command_removes_old_orphans_keeps_documents_and_says_how_many(
    environment, vault: Services, blob_root: Path
):
    client, download, content = publish(vault)
    (referenced,) = stored(blob_root)
    lost = orphan(vault)
    for key in (referenced, lost):
        backdate(blob_path(blob_root, key), 2 * 3600)

    result = CliRunner().invoke(cli, ["blobs", "sweep", "--grace", "3600"])

    assert result.exit_code == 0, result.output
    assert "removed 1 orphaned blobs" in result.stdout
    assert stored(blob_root) == {referenced}
    url = download.pop("url")
    assert client.get(url, headers=download).content == content


def test_sweep_command_spares_orphans_younger_than_the_configured_grace(
    environment, vault: Services, blob_root: Path, monkeypatch: pytest.MonkeyPatch
):
    recent = orphan(vault)
    backdate(blob_path(blob_root, recent), 10 * 60)
    monkeypatch.setenv("VAULT_ORPHAN_BLOB_GRACE_SECONDS", "1800")

    result = CliRunner().invoke(cli, ["blobs", "sweep"])

    assert result.exit_code == 0, result.output
    assert "removed 0 orphaned blobs" in result.stdout
    assert "older than 1800 seconds" in result.stdout
    assert stored(blob_root) == {recent}


def test_sweep_command_drops_interrupted_writes(environment, vault: Services, blob_root: Path):
    key = uuid4().hex
    partial = blob_path(blob_root, key).with_name(f"{key}.part")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half written")
    backdate(partial, 2 * 3600)

    result = CliRunner().invoke(cli, ["blobs", "sweep", "--grace", "3600"])

    assert result.exit_code == 0, result.output
    assert "1 interrupted writes" in result.stdout
    assert not partial.exists()


def test_sweep_command_refuses_a_negative_grace(environment):
    result = CliRunner().invoke(cli, ["blobs", "sweep", "--grace", "-1"])
    assert result.exit_code != 0


def test_sweep_command_reports_a_misconfigured_store_on_stderr(
    environment, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("VAULT_BLOB_STORE", "ftp://blobs.example")

    result = CliRunner().invoke(cli, ["blobs", "sweep"])

    assert result.exit_code == 1
    assert "Unknown blob store" in result.stderr
    assert result.stdout == ""


def test_sweep_command_deletes_nothing_when_the_database_cannot_be_asked(
    environment, vault: Services, blob_root: Path, monkeypatch: pytest.MonkeyPatch, settings
):
    lost = orphan(vault)
    backdate(blob_path(blob_root, lost), 2 * 3600)
    absent = settings.database_url.rsplit("/", 1)[0] + f"/vault_absent_{uuid4().hex[:8]}"
    monkeypatch.setenv("VAULT_DATABASE_URL", absent)

    result = CliRunner().invoke(cli, ["blobs", "sweep", "--grace", "3600"])

    assert result.exit_code == 1
    assert "OperationalError" in result.stderr
    assert stored(blob_root) == {lost}
