"""A data backup alone reveals nothing, and a damaged or altered one is refused whole."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import MetaData, func, select

from tests.backup.support import fill, open_vault, run_cli, vault_settings
from vault.backup.archive import MAGIC, SEGMENT_SIZE, read_header
from vault.db import make_engine

FAMILY = "Zyxbackupfamily"
CONTENT = b"%PDF-1.7 MARKER-BACKUP-CONTENT compte rendu confidentiel"


@pytest.fixture
def backed_up(tmp_path: Path, fresh_database):
    """A filled vault's settings, its backup, and what it holds in clear."""
    archive = tmp_path / "vault.vbk"
    with fresh_database() as url:
        settings = vault_settings(url, tmp_path / "vault", f"file://{tmp_path / 'blobs'}")
        with open_vault(settings) as vault:
            documents = fill(vault)
            patient_id, ins_value = vault.create_patient(31, family=FAMILY)
            document_id, binary_id = vault.publish(patient_id, CONTENT)
        made = run_cli(settings, "backup", "create", str(archive))
        assert made.exit_code == 0, made.output
        secrets = [ins_value, patient_id, document_id, binary_id, *documents]
        yield settings, archive, secrets


def test_a_stolen_data_backup_reveals_no_identifier_name_or_content(backed_up):
    _settings, archive, identifiers = backed_up
    raw = archive.read_bytes()
    for secret in [*identifiers, FAMILY, "Drillfirst"]:
        assert secret.encode() not in raw
    for content in (CONTENT, b"MARKER-BACKUP-CONTENT", base64.b64encode(CONTENT)):
        assert content not in raw
    # All that is in clear is the header needed to open it with the keys.
    with archive.open("rb") as handle:
        header, encoded = read_header(handle)
    assert set(json.loads(encoded)) == {
        "format",
        "kind",
        "backup_id",
        "created_at",
        "master_key_id",
        "wrapped_key",
        "segment_size",
    }
    assert header.segment_size == SEGMENT_SIZE


def test_an_intact_backup_verifies(backed_up):
    settings, archive, _ = backed_up
    result = run_cli(settings, "backup", "verify", str(archive))
    assert result.exit_code == 0, result.output
    assert "is intact" in result.output


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _body_start(path: Path) -> int:
    with path.open("rb") as handle:
        _header, encoded = read_header(handle)
    return len(MAGIC) + 4 + len(encoded)


@pytest.mark.parametrize(
    "damage",
    ["flip-in-body", "flip-in-header", "truncate-at-segment", "truncate-mid-segment"],
)
def test_a_damaged_backup_is_refused_and_restores_nothing(
    backed_up, tmp_path: Path, fresh_database, damage: str
):
    settings, archive, _ = backed_up
    body = _body_start(archive)
    size = archive.stat().st_size
    if damage == "flip-in-body":
        _flip(archive, body + (size - body) // 2)
    elif damage == "flip-in-header":
        raw = archive.read_bytes()
        stamp = raw.index(b'"created_at": "') + len('"created_at": "')
        _flip(archive, stamp + 3)
    else:
        # Whole segments from the end (each sealed segment is the segment size plus a tag)
        # or a cut in the middle of one.
        cut = body + 8 + SEGMENT_SIZE + 16 if damage == "truncate-at-segment" else size - 100
        archive.write_bytes(archive.read_bytes()[:cut])

    checked = run_cli(settings, "backup", "verify", str(archive))
    assert checked.exit_code == 1
    assert "damaged or was altered" in checked.output

    with fresh_database(migrate=False) as target_url:
        blobs = tmp_path / "target-blobs"
        target = settings.model_copy(
            update={"database_url": target_url, "blob_store": f"file://{blobs}"}
        )
        restored = run_cli(target, "restore", "data", str(archive))
        assert restored.exit_code == 1
        assert "damaged or was altered" in restored.output
        engine = make_engine(target_url)
        try:
            with engine.connect() as connection:
                metadata = MetaData()
                metadata.reflect(connection)
                for table in metadata.sorted_tables:
                    if table.name != "alembic_version":
                        count = connection.scalar(select(func.count()).select_from(table))
                        assert count == 0, table.name
        finally:
            engine.dispose()
        assert not [path for path in blobs.rglob("*") if path.is_file()]
