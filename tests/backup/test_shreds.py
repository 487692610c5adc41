"""Crypto-shredding survives a restore: a document deleted after the backup was taken is
shredded again when the backup comes back, from whichever newer source is at hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from tests.backup.support import open_vault, run_cli, vault_settings
from vault.db import make_engine
from vault.models import AuditEntry, Document


@pytest.mark.parametrize("source", ["old-database", "shred-list", "newer-backup"])
def test_a_document_deleted_after_the_backup_stays_deleted_after_a_restore(
    tmp_path: Path, fresh_database, source: str
):
    archive = tmp_path / "old.vbk"
    with fresh_database() as source_url:
        settings = vault_settings(source_url, tmp_path / "vault", f"file://{tmp_path / 'blobs'}")
        with open_vault(settings) as vault:
            patient_id, ins_value = vault.create_patient(41)
            doomed, doomed_binary = vault.publish(patient_id, b"deleted after the backup")
            _kept, kept_binary = vault.publish(patient_id, b"kept")
            assert run_cli(settings, "backup", "create", str(archive)).exit_code == 0

            deleted = vault.client.delete(
                f"/fhir/DocumentReference/{doomed}", headers=vault.tokens.professional()
            )
            assert deleted.status_code in (200, 204), deleted.text

        newer = {
            "old-database": source_url,
            "shred-list": str(tmp_path / "shreds.json"),
            "newer-backup": str(tmp_path / "newer.vbk"),
        }[source]
        if source == "shred-list":
            assert run_cli(settings, "backup", "shreds", newer).exit_code == 0
        if source == "newer-backup":
            assert run_cli(settings, "backup", "create", newer).exit_code == 0

        with fresh_database(migrate=False) as target_url:
            target = settings.model_copy(
                update={"database_url": target_url, "blob_store": f"file://{tmp_path / 'new'}"}
            )
            restored = run_cli(
                target,
                "restore",
                "data",
                str(archive),
                "--shreds-from",
                newer,
                "--operator",
                "ops-7",
            )
            assert restored.exit_code == 0, restored.output
            assert "1 later deletions replayed" in restored.output
            assert "audit log verified" in restored.output

            with open_vault(target) as vault:
                gone = vault.client.get(
                    f"/fhir/Binary/{doomed_binary}", headers=vault.tokens.patient(ins_value)
                )
                assert gone.status_code == 410
                assert vault.download(kept_binary, ins_value) == b"kept"
                with vault.services.session_factory() as session:
                    document = session.scalar(select(Document).where(Document.id == doomed))
                    assert document is not None
                    assert document.deleted_at is not None
                    replay = session.scalars(
                        select(AuditEntry).where(
                            AuditEntry.resource_id == doomed, AuditEntry.action == "D"
                        )
                    ).one()
                    assert replay.actor_role == "operator"
                    assert replay.actor_id == "ops-7"
                    assert replay.detail["reason"] == "deletion replayed after a restore"


def test_an_altered_shred_list_is_refused_before_anything_is_restored(
    tmp_path: Path, fresh_database
):
    archive = tmp_path / "vault.vbk"
    shreds = tmp_path / "shreds.json"
    with fresh_database() as source_url:
        settings = vault_settings(source_url, tmp_path / "vault")
        with open_vault(settings) as vault:
            patient_id, _ = vault.create_patient(42)
            victim, _ = vault.publish(patient_id, b"someone wants this destroyed")
        assert run_cli(settings, "backup", "create", str(archive)).exit_code == 0
        assert run_cli(settings, "backup", "shreds", str(shreds)).exit_code == 0

        listed = json.loads(shreds.read_text())
        assert listed["documents"] == []
        listed["documents"].append(
            {"document_id": victim, "deleted_at": "2026-01-01T00:00:00+00:00"}
        )
        shreds.write_text(json.dumps(listed))

        with fresh_database(migrate=False) as target_url:
            target = settings.model_copy(update={"database_url": target_url})
            result = run_cli(target, "restore", "data", str(archive), "--shreds-from", str(shreds))
            assert result.exit_code == 1
            assert "altered" in result.output
            engine = make_engine(target_url)
            try:
                assert inspect(engine).get_table_names() == []
            finally:
                engine.dispose()


def test_deletions_replay_into_a_database_brought_back_another_way(tmp_path: Path, fresh_database):
    """A point-in-time recovery or a failover to a lagging replica: the database is back
    without `vault restore data`, and the deletions it missed are replayed on their own."""
    archive = tmp_path / "old.vbk"
    with fresh_database() as source_url:
        settings = vault_settings(source_url, tmp_path / "vault")
        with open_vault(settings) as vault:
            patient_id, ins_value = vault.create_patient(43)
            doomed, doomed_binary = vault.publish(patient_id, b"deleted after the backup")
            assert run_cli(settings, "backup", "create", str(archive)).exit_code == 0
            vault.client.delete(
                f"/fhir/DocumentReference/{doomed}", headers=vault.tokens.professional()
            )

        with fresh_database(migrate=False) as lagging_url:
            lagging = settings.model_copy(update={"database_url": lagging_url})
            assert run_cli(lagging, "restore", "data", str(archive)).exit_code == 0
            with open_vault(lagging) as vault:
                assert vault.download(doomed_binary, ins_value) == b"deleted after the backup"

            replayed = run_cli(lagging, "restore", "shreds", source_url)
            assert replayed.exit_code == 0, replayed.output
            assert "1 deletions replayed" in replayed.output
            again = run_cli(lagging, "restore", "shreds", source_url)
            assert "0 deletions replayed" in again.output
            with open_vault(lagging) as vault:
                response = vault.client.get(
                    f"/fhir/Binary/{doomed_binary}", headers=vault.tokens.patient(ins_value)
                )
                assert response.status_code == 410
            assert run_cli(lagging, "audit", "verify").exit_code == 0
