"""Key backups: sealed under a passphrase, restored only where no key exists."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from tests.backup.support import open_vault, run_cli, vault_settings
from vault.backup import keys as key_backup
from vault.backup.archive import BackupError

PASSPHRASE = "a long enough key custody passphrase"


@pytest.fixture
def keyed_vault(tmp_path: Path, fresh_database):
    """A vault that has made its keyring, its issuer key and its audit signing key."""
    with fresh_database() as url:
        settings = vault_settings(url, tmp_path / "vault")
        with open_vault(settings) as vault:
            vault.create_patient(51)
            assert vault.services.audit_log.checkpoints.make(vault.services.session_factory)
        passphrase = tmp_path / "passphrase"
        passphrase.write_text(PASSPHRASE + "\n")
        yield settings, passphrase


def _key_files(data_dir: Path) -> dict[str, bytes]:
    return {
        name: (data_dir / name).read_bytes()
        for name in ("keyring.json", *key_backup.DATA_DIR_KEY_FILES)
        if (data_dir / name).exists()
    }


def test_keys_restore_byte_identical_and_private_into_a_fresh_data_directory(
    keyed_vault, tmp_path: Path
):
    settings, passphrase = keyed_vault
    backup = tmp_path / "keys.vkb"
    made = run_cli(settings, "backup", "keys", str(backup), "--passphrase-file", str(passphrase))
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600

    fresh = settings.model_copy(update={"data_dir": tmp_path / "elsewhere"})
    restored = run_cli(fresh, "restore", "keys", str(backup), "--passphrase-file", str(passphrase))

    assert restored.exit_code == 0, restored.output
    original = _key_files(settings.data_dir)
    assert set(original) == {"keyring.json", *key_backup.DATA_DIR_KEY_FILES}
    assert _key_files(fresh.data_dir) == original
    for name in original:
        assert stat.S_IMODE((fresh.data_dir / name).stat().st_mode) == 0o600


def test_a_key_backup_holds_no_key_in_clear(keyed_vault, tmp_path: Path):
    settings, passphrase = keyed_vault
    backup = tmp_path / "keys.vkb"
    run_cli(settings, "backup", "keys", str(backup), "--passphrase-file", str(passphrase))
    raw = backup.read_bytes()
    keyring = json.loads((settings.data_dir / "keyring.json").read_text())
    for master in keyring["master_keys"]:
        assert master["key"].encode() not in raw
        assert base64.b64decode(master["key"]) not in raw
    assert keyring["index_key"].encode() not in raw
    assert b"PRIVATE KEY" not in raw


def test_a_wrong_passphrase_restores_nothing(keyed_vault, tmp_path: Path):
    settings, passphrase = keyed_vault
    backup = tmp_path / "keys.vkb"
    run_cli(settings, "backup", "keys", str(backup), "--passphrase-file", str(passphrase))
    wrong = tmp_path / "wrong"
    wrong.write_text("not the right passphrase at all")
    fresh = settings.model_copy(update={"data_dir": tmp_path / "elsewhere"})

    result = run_cli(fresh, "restore", "keys", str(backup), "--passphrase-file", str(wrong))

    assert result.exit_code == 1
    assert "Wrong passphrase" in result.output
    assert not fresh.data_dir.exists() or not any(fresh.data_dir.iterdir())


def test_restoring_keys_never_overwrites_an_existing_keyring(keyed_vault, tmp_path: Path):
    settings, passphrase = keyed_vault
    backup = tmp_path / "keys.vkb"
    run_cli(settings, "backup", "keys", str(backup), "--passphrase-file", str(passphrase))
    before = _key_files(settings.data_dir)

    result = run_cli(settings, "restore", "keys", str(backup), "--passphrase-file", str(passphrase))

    assert result.exit_code == 1
    assert "exist already" in result.output
    assert _key_files(settings.data_dir) == before


def test_a_short_passphrase_is_refused():
    material = key_backup.KeyMaterial(keyring=b"{}", files={})
    with pytest.raises(BackupError, match="at least"):
        key_backup.seal(material, "short")


def test_once_the_master_key_is_retired_older_backups_are_noise(tmp_path: Path, fresh_database):
    """Key backups expire, retired keys are purged: then no key exists that opens a data
    backup taken before the rotation, whoever still holds a copy of it."""
    old = tmp_path / "old.vbk"
    with fresh_database() as url:
        settings = vault_settings(url, tmp_path / "vault")
        with open_vault(settings) as vault:
            patient_id, _ = vault.create_patient(52)
            vault.publish(patient_id, b"before the rotation")
        assert run_cli(settings, "backup", "create", str(old)).exit_code == 0
        assert run_cli(settings, "backup", "verify", str(old)).exit_code == 0

        rotated = run_cli(settings, "keys", "rotate")
        assert rotated.exit_code == 0, rotated.output
        assert "rewrapping patient keys: done" in rotated.output
        assert run_cli(settings, "backup", "verify", str(old)).exit_code == 0
        # Within the retention period the old backup may still be needed: the key stays.
        kept = run_cli(settings, "keys", "retire")
        assert kept.exit_code == 0, kept.output
        assert "retired 0 master keys" in kept.output
        assert run_cli(settings, "backup", "verify", str(old)).exit_code == 0
        # Once it has passed (here: no retention at all), the key goes.
        retired = run_cli(settings, "keys", "retire", "--retention-days", "0")
        assert retired.exit_code == 0, retired.output
        assert "retired 1 master keys" in retired.output

        result = run_cli(settings, "backup", "verify", str(old))
        assert result.exit_code == 1
        assert "cannot open this backup" in result.output
        newer = tmp_path / "new.vbk"
        assert run_cli(settings, "backup", "create", str(newer)).exit_code == 0
        assert run_cli(settings, "backup", "verify", str(newer)).exit_code == 0
