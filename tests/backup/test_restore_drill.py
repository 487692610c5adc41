"""The restore drill: fill a vault, back it up, lose everything, restore into a fresh
database, blob store and data directory from the two backups (data, keys), and prove the
vault is whole again."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from tests.backup.support import (
    fill,
    open_vault,
    run_cli,
    table_contents,
    vault_settings,
)
from vault.db import make_engine
from vault.models import StoredBlobChunk

# Tables the restore rebuilds rather than copies: the schema's bookkeeping, and the db:
# store's chunks, which travel as blobs.
NOT_COPIED = frozenset({"alembic_version", StoredBlobChunk.__tablename__})
PASSPHRASE = "correct horse battery staple"


@pytest.mark.parametrize(
    ("source_store", "target_store"),
    [("file", "file"), ("db", "file")],
    ids=["file-to-file", "db-to-file"],
)
def test_restore_drill_brings_back_every_document_byte_identical_with_a_verifying_audit_log(
    tmp_path: Path, fresh_database, source_store: str, target_store: str
):
    def store(side: str, kind: str) -> str:
        return f"file://{tmp_path / side / 'blobs'}" if kind == "file" else "db:"

    archive = tmp_path / "offsite" / "vault.vbk"
    key_backup = tmp_path / "key-custody" / "keys.vkb"
    archive.parent.mkdir()
    key_backup.parent.mkdir()
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE)

    with fresh_database() as source_url:
        source = vault_settings(source_url, tmp_path / "source", store("source", source_store))
        with open_vault(source) as vault:
            documents = fill(vault)
        deleted_binary = next(key for key, (_, content) in documents.items() if content == b"")

        made = run_cli(source, "backup", "create", str(archive))
        assert made.exit_code == 0, made.output
        keyed = run_cli(
            source, "backup", "keys", str(key_backup), "--passphrase-file", str(passphrase)
        )
        assert keyed.exit_code == 0, keyed.output
        source_tables = table_contents(source_url, NOT_COPIED)

    # The source database, its blobs and its data directory are gone; only the two
    # backups, kept apart, remain.
    with fresh_database(migrate=False) as target_url:
        target = vault_settings(target_url, tmp_path / "target", store("target", target_store))
        restored_keys = run_cli(
            target, "restore", "keys", str(key_backup), "--passphrase-file", str(passphrase)
        )
        assert restored_keys.exit_code == 0, restored_keys.output
        restored = run_cli(target, "restore", "data", str(archive))
        assert restored.exit_code == 0, restored.output
        assert "audit log verified" in restored.output

        assert table_contents(target_url, NOT_COPIED) == source_tables
        verified = run_cli(target, "audit", "verify")
        assert verified.exit_code == 0, verified.output

        with open_vault(target) as vault:
            for binary_id, (ins_value, content) in documents.items():
                response = vault.client.get(
                    f"/fhir/Binary/{binary_id}", headers=vault.tokens.patient(ins_value)
                )
                if binary_id == deleted_binary:
                    assert response.status_code == 410
                else:
                    assert response.status_code == 200, response.text
                    assert response.content == content


def test_restore_without_the_keys_fails_before_touching_the_target(tmp_path: Path, fresh_database):
    archive = tmp_path / "vault.vbk"
    with fresh_database() as source_url:
        source = vault_settings(source_url, tmp_path / "source")
        with open_vault(source) as vault:
            fill(vault)
        assert run_cli(source, "backup", "create", str(archive)).exit_code == 0

    with fresh_database(migrate=False) as target_url:
        # A fresh data directory: a new, unrelated keyring is made for it.
        target = vault_settings(target_url, tmp_path / "stranger")
        result = run_cli(target, "restore", "data", str(archive))
        assert result.exit_code == 1
        assert "cannot open this backup" in result.output
        engine = make_engine(target_url)
        try:
            assert inspect(engine).get_table_names() == []
        finally:
            engine.dispose()


def test_restore_refuses_a_database_that_already_holds_data(tmp_path: Path, fresh_database):
    archive = tmp_path / "vault.vbk"
    with fresh_database() as url:
        settings = vault_settings(url, tmp_path / "vault")
        with open_vault(settings) as vault:
            vault.create_patient(21)
        assert run_cli(settings, "backup", "create", str(archive)).exit_code == 0
        before = table_contents(url)

        result = run_cli(settings, "restore", "data", str(archive))

        assert result.exit_code == 1
        assert "not empty" in result.output
        assert table_contents(url) == before


def test_a_backup_never_overwrites_a_file(tmp_path: Path, fresh_database):
    archive = tmp_path / "vault.vbk"
    archive.write_bytes(b"precious")
    with fresh_database() as url:
        result = run_cli(vault_settings(url, tmp_path / "vault"), "backup", "create", str(archive))
    assert result.exit_code == 1
    assert archive.read_bytes() == b"precious"
