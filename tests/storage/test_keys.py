"""The local keyring and the key hierarchy's rotation and retirement."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tests.storage.vaults import Vault, own_vault, snapshot
from vault.cli import app as cli
from vault.errors import IntegrityError, VaultError
from vault.settings import get_settings
from vault.storage.keys.local import KeyringError, LocalKeyProvider

# What rotation must leave exactly as it was: documents, their versions, contents and
# ciphertext, and the patients' own records.
UNTOUCHED = ["documents", "document_versions", "binaries", "blob_chunks", "patients"]
# Retirement as if no data backup were kept.
NO_RETENTION = timedelta(0)


# -- the keyring file ---------------------------------------------------------------------


def test_keyring_is_created_readable_by_its_owner_only(tmp_path):
    previous = os.umask(0)
    try:
        provider = LocalKeyProvider(tmp_path / "data" / "keyring.json")
    finally:
        os.umask(previous)
    assert provider.path.stat().st_mode & 0o777 == 0o600
    assert provider.path.parent.stat().st_mode & 0o777 == 0o700
    assert [entry.name for entry in provider.path.parent.iterdir()] == ["keyring.json"]
    stored = json.loads(provider.path.read_text())
    assert stored["current"] == provider.current_master_key_id()
    assert [key["id"] for key in stored["master_keys"]] == provider.master_key_ids()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620])
def test_keyring_accessible_to_group_or_world_is_refused(tmp_path, mode):
    path = tmp_path / "keyring.json"
    running = LocalKeyProvider(path)
    path.chmod(mode)
    with pytest.raises(KeyringError) as refused:
        LocalKeyProvider(path)
    assert refused.value.status_code == 503
    # A running vault notices too, rather than carrying on with an exposed keyring.
    with pytest.raises(KeyringError):
        running.wrap(os.urandom(32), b"context")
    with pytest.raises(KeyringError):
        running.check()


def test_missing_keyring_fails_the_readiness_check(tmp_path):
    provider = LocalKeyProvider(tmp_path / "keyring.json")
    provider.path.unlink()
    with pytest.raises(KeyringError):
        provider.check()


def test_keyring_reopened_unwraps_what_it_wrapped_and_indexes_alike(tmp_path):
    first = LocalKeyProvider(tmp_path / "keyring.json")
    key_id, wrapped = first.wrap(b"k" * 32, b"patient-kek-1")
    again = LocalKeyProvider(tmp_path / "keyring.json")
    assert again.current_master_key_id() == key_id
    assert again.unwrap(key_id, wrapped, b"patient-kek-1") == b"k" * 32
    assert again.blind_index("ins", b"1") == first.blind_index("ins", b"1")


def test_wrapped_key_is_bound_to_its_context_and_master_key(tmp_path):
    provider = LocalKeyProvider(tmp_path / "keyring.json")
    key_id, wrapped = provider.wrap(b"k" * 32, b"patient-kek-1")
    with pytest.raises(IntegrityError):
        provider.unwrap(key_id, wrapped, b"patient-kek-2")
    with pytest.raises(IntegrityError):
        provider.unwrap(key_id, wrapped[:-1] + bytes([wrapped[-1] ^ 1]), b"patient-kek-1")
    with pytest.raises(IntegrityError):
        provider.unwrap(key_id, wrapped[:10], b"patient-kek-1")
    with pytest.raises(IntegrityError):
        provider.unwrap("local-unknown", wrapped, b"patient-kek-1")


def test_first_starts_racing_on_an_empty_data_dir_share_one_keyring(tmp_path):
    path = tmp_path / "keyring.json"
    start = threading.Barrier(8)
    providers: list[LocalKeyProvider] = []

    def open_keyring() -> None:
        start.wait()
        providers.append(LocalKeyProvider(path))

    threads = [threading.Thread(target=open_keyring) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({provider.current_master_key_id() for provider in providers}) == 1
    assert len(providers[0].master_key_ids()) == 1
    assert [entry.name for entry in tmp_path.iterdir()] == ["keyring.json"]


def test_rotation_and_retirement_by_another_process_reach_a_running_provider(tmp_path):
    server = LocalKeyProvider(tmp_path / "keyring.json")
    old_id, wrapped = server.wrap(b"k" * 32, b"context")
    operator = LocalKeyProvider(tmp_path / "keyring.json")
    new_id = operator.rotate()
    assert server.current_master_key_id() == new_id
    assert server.wrap(b"k" * 32, b"context")[0] == new_id
    assert server.unwrap(old_id, wrapped, b"context") == b"k" * 32
    operator.retire(old_id)
    with pytest.raises(IntegrityError):
        server.unwrap(old_id, wrapped, b"context")
    assert server.master_key_ids() == [new_id]


def test_concurrent_rotations_lose_no_master_key(tmp_path):
    providers = [LocalKeyProvider(tmp_path / "keyring.json") for _ in range(4)]
    created: list[str] = []

    def rotate(provider: LocalKeyProvider) -> None:
        for _ in range(5):
            created.append(provider.rotate())

    threads = [threading.Thread(target=rotate, args=(provider,)) for provider in providers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    on_disk = LocalKeyProvider(tmp_path / "keyring.json").master_key_ids()
    assert len(on_disk) == 21
    assert set(created) <= set(on_disk)


def test_current_master_key_cannot_be_retired(tmp_path):
    provider = LocalKeyProvider(tmp_path / "keyring.json")
    with pytest.raises(VaultError):
        provider.retire(provider.current_master_key_id())
    assert len(provider.master_key_ids()) == 1


# -- rotation of a running vault's keys -----------------------------------------------------


@pytest.fixture
def vault(services, database_url, tmp_path):
    """``services`` empties the database afterwards."""
    with own_vault(database_url, tmp_path / "data") as own:
        yield own


@dataclass
class Stored:
    contents: dict[str, tuple[str, bytes]]  # binary id -> (INS, content)
    patients: dict[str, str]  # patient id -> INS


def fill(vault: Vault) -> Stored:
    """Two patients, documents by a professional, by software and by the patient, and a
    replaced document (so older versions exist)."""
    stored = Stored({}, {})
    first_id, first_ins = vault.create_patient(1)
    second_id, second_ins = vault.create_patient(2, family="Durand")
    stored.patients = {first_id: first_ins, second_id: second_ins}
    for number in range(3):
        content = f"%PDF-1.7 compte rendu {number}".encode()
        _, binary = vault.publish(first_id, content)
        stored.contents[binary] = (first_ins, content)
    old_document, old_binary = vault.publish(second_id, b"first draft", "text/plain")
    stored.contents[old_binary] = (second_ins, b"first draft")
    _, binary = vault.publish(
        second_id,
        b"second draft",
        "text/plain",
        relatesTo=[
            {"code": "replaces", "target": {"reference": f"DocumentReference/{old_document}"}}
        ],
    )
    stored.contents[binary] = (second_ins, b"second draft")
    _, binary = vault.publish(
        second_id, b"directives anticipees", "text/plain", headers=vault.tokens.patient(second_ins)
    )
    stored.contents[binary] = (second_ins, b"directives anticipees")
    return stored


def assert_all_readable(vault: Vault, stored: Stored) -> None:
    """Every content, every version of every document and every patient record."""
    # Cold caches: every read must unwrap its patient key through the master key again.
    vault.services.keys.forget()
    for binary, (ins_value, content) in stored.contents.items():
        assert vault.download(binary, ins_value) == content
    with vault.services.engine.connect() as connection:
        documents = connection.execute(
            text("SELECT id, patient_id, current_version FROM documents")
        ).all()
    assert len(documents) == len(stored.contents)
    for document_id, patient_id, versions in documents:
        headers = vault.tokens.patient(stored.patients[patient_id])
        for number in range(1, versions + 1):
            read = vault.client.get(
                f"/fhir/DocumentReference/{document_id}/_history/{number}", headers=headers
            )
            assert read.status_code == 200, read.text
            assert read.json()["id"] == document_id
    for patient_id, ins_value in stored.patients.items():
        read = vault.client.get(
            f"/fhir/Patient/{patient_id}", headers=vault.tokens.patient(ins_value)
        )
        assert read.status_code == 200, read.text
        assert read.json()["identifier"][0]["value"] == ins_value


def patient_keys(vault: Vault) -> dict[str, tuple[str, str]]:
    with vault.services.engine.connect() as connection:
        return {
            key_id: (master, wrapped)
            for key_id, master, wrapped in connection.execute(
                text("SELECT id, master_key_id, encode(wrapped_key, 'hex') FROM patient_keys")
            )
        }


def test_rotation_rewraps_patient_keys_and_leaves_documents_byte_for_byte(vault):
    stored = fill(vault)
    provider = vault.services.key_provider
    old_master = provider.current_master_key_id()
    before_keys = patient_keys(vault)
    before = snapshot(vault.services.engine, UNTOUCHED)
    assert before["blob_chunks"]
    assert {master for master, _ in before_keys.values()} == {old_master}

    new_master, rewrapped = vault.services.keys.rotate_master_key(vault.services.session_factory)

    assert new_master == provider.current_master_key_id() != old_master
    assert rewrapped == len(before_keys) == 2
    after_keys = patient_keys(vault)
    assert after_keys.keys() == before_keys.keys()
    for key_id, (master, wrapped) in after_keys.items():
        assert master == new_master
        assert wrapped != before_keys[key_id][1]
    assert snapshot(vault.services.engine, UNTOUCHED) == before
    assert old_master in provider.master_key_ids()
    assert_all_readable(vault, stored)


def test_retirement_destroys_only_master_keys_no_patient_key_needs(vault):
    stored = fill(vault)
    provider = vault.services.key_provider
    in_use = provider.current_master_key_id()
    # An interrupted rotation: new master keys made, patient keys not yet rewrapped.
    unused = provider.rotate()
    current = provider.rotate()

    with vault.services.session_factory() as session:
        retired = vault.services.keys.retire_unused_master_keys(session, NO_RETENTION).retired
        assert vault.services.keys.count_stale(session) == 2

    assert retired == [unused]
    assert provider.master_key_ids() == [in_use, current]
    assert_all_readable(vault, stored)

    # Re-running the rotation completes it; then the old key is no longer needed.
    newest, rewrapped = vault.services.keys.rotate_master_key(vault.services.session_factory)
    assert rewrapped == 2
    with vault.services.session_factory() as session:
        assert vault.services.keys.count_stale(session) == 0
        outcome = vault.services.keys.retire_unused_master_keys(session, NO_RETENTION)
        assert sorted(outcome.retired) == sorted([in_use, current])
    assert provider.master_key_ids() == [newest]
    assert_all_readable(vault, stored)


def test_vault_keys_rotate_command_rewraps_while_the_server_keeps_serving(vault, database_url):
    stored = fill(vault)
    before = snapshot(vault.services.engine, UNTOUCHED)
    old_master = vault.services.key_provider.current_master_key_id()
    environment = {
        "VAULT_DATABASE_URL": database_url,
        "VAULT_DATA_DIR": str(vault.settings.data_dir),
        "VAULT_KEY_PROVIDER": "",
    }
    get_settings.cache_clear()
    try:
        rotated = CliRunner().invoke(cli, ["keys", "rotate"], env=environment)
        assert rotated.exit_code == 0, rotated.output
        new_master = vault.services.key_provider.current_master_key_id()
        assert new_master != old_master
        assert f"new master key {new_master}; 2 patient keys rewrapped" in rotated.output
        assert {master for master, _ in patient_keys(vault).values()} == {new_master}
        assert snapshot(vault.services.engine, UNTOUCHED) == before
        assert_all_readable(vault, stored)

        # A patient created after the rotation gets a key under the new master key.
        third_id, third_ins = vault.create_patient(3)
        stored.patients[third_id] = third_ins
        assert {master for master, _ in patient_keys(vault).values()} == {new_master}

        # Right after the rotation, backups taken before it still need the old key.
        kept = CliRunner().invoke(cli, ["keys", "retire"], env=environment)
        assert kept.exit_code == 0, kept.output
        assert "retired 0 master keys" in kept.output
        retirable_from = (datetime.now(UTC) + timedelta(days=35)).date().isoformat()
        assert f"kept {old_master}: backups taken before {retirable_from}" in kept.output
        assert old_master in vault.services.key_provider.master_key_ids()

        retired = CliRunner().invoke(
            cli, ["keys", "retire", "--retention-days", "0"], env=environment
        )
        assert retired.exit_code == 0, retired.output
        assert "retired 1 master keys" in retired.output
    finally:
        get_settings.cache_clear()
    assert vault.services.key_provider.master_key_ids() == [new_master]
    assert_all_readable(vault, stored)


def test_keyring_path_is_read_from_the_key_provider_setting(services, database_url, tmp_path):
    keyring = tmp_path / "elsewhere" / "keys.json"
    with own_vault(database_url, tmp_path / "data", key_provider=f"local:{keyring}") as vault:
        patient_id, ins_value = vault.create_patient(4)
        _, binary = vault.publish(patient_id, b"%PDF-1.7 x")
        assert vault.download(binary, ins_value) == b"%PDF-1.7 x"
    assert keyring.stat().st_mode & 0o777 == 0o600
    assert not Path(tmp_path / "data" / "keyring.json").exists()


def test_keyring_exposed_while_serving_answers_503_until_fixed(vault):
    patient_id, ins_value = vault.create_patient(5)
    _, binary = vault.publish(patient_id, b"%PDF-1.7 y")
    keyring = Path(vault.settings.effective_key_provider.removeprefix("local:"))
    keyring.chmod(0o644)
    vault.services.keys.forget()
    refused = vault.client.get(f"/fhir/Binary/{binary}", headers=vault.tokens.patient(ins_value))
    assert refused.status_code == 503, refused.text
    assert refused.json()["issue"][0]["code"] == "transient"
    keyring.chmod(0o600)
    assert vault.download(binary, ins_value) == b"%PDF-1.7 y"


def test_an_unused_master_key_is_kept_until_every_backup_that_needs_it_has_expired(vault):
    stored = fill(vault)
    provider = vault.services.key_provider
    old = provider.current_master_key_id()
    new, _ = vault.services.keys.rotate_master_key(vault.services.session_factory)
    rotated_at = provider.master_key_created_at(new)
    assert rotated_at is not None
    retention = timedelta(days=35)

    with vault.services.session_factory() as session:
        early = vault.services.keys.retire_unused_master_keys(
            session, retention, now=rotated_at + retention - timedelta(minutes=1)
        )
        assert early.retired == []
        assert [(kept.master_key_id, kept.retirable_from) for kept in early.kept] == [
            (old, rotated_at + retention)
        ]
        assert old in provider.master_key_ids()

        due = vault.services.keys.retire_unused_master_keys(
            session, retention, now=rotated_at + retention
        )
    assert due.retired == [old]
    assert due.kept == []
    assert provider.master_key_ids() == [new]
    assert_all_readable(vault, stored)


def test_a_master_key_whose_replacement_has_no_known_date_is_never_retired(vault):
    provider = vault.services.key_provider
    old = provider.current_master_key_id()
    new, _ = vault.services.keys.rotate_master_key(vault.services.session_factory)
    keyring = json.loads(provider.path.read_text())
    for entry in keyring["master_keys"]:
        if entry["id"] == new:
            del entry["created_at"]
    provider.path.write_text(json.dumps(keyring))
    assert provider.master_key_created_at(new) is None

    with vault.services.session_factory() as session:
        outcome = vault.services.keys.retire_unused_master_keys(
            session, timedelta(days=35), now=datetime.now(UTC) + timedelta(days=3650)
        )
    assert outcome.retired == []
    assert [kept.master_key_id for kept in outcome.kept] == [old]
    assert "does not say when it stopped being current" in outcome.kept[0].describe()
    assert old in provider.master_key_ids()

    # Unless the operator says no backup is kept.
    with vault.services.session_factory() as session:
        forced = vault.services.keys.retire_unused_master_keys(session, timedelta(0))
    assert forced.retired == [old]
