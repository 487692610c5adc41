"""The ``pkcs11:`` key provider against a real SoftHSM2 token.

SoftHSM2 is a hard requirement (``scripts/test`` installs Debian's softhsm2 under CI): these
tests fail when it is missing, they are never skipped.

The SoftHSM2 library reads its configuration once per process, when it is first loaded, and
tokens created afterwards by ``softhsm2-util`` stay invisible to it; so the token directory
is made once per test session, before anything loads the library, and each test isolates its
keys by its own ``object=`` label prefix instead of its own token.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.exceptions import AttributeSensitive
from sqlalchemy import text
from typer.testing import CliRunner

from tests.storage.vaults import own_vault, snapshot
from vault.cli import app as cli
from vault.errors import IntegrityError, VaultError
from vault.settings import get_settings
from vault.storage.keys.factory import key_provider_from_url
from vault.storage.keys.pkcs11 import Pkcs11KeyProvider, Pkcs11Url
from vault.storage.keys.provider import KeyProviderError
from vault.storage.keys.service import Kek, KeyService

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "4821-vault-user"
SO_PIN = "9137-vault-so"
TOKEN = "vault-tests"
# Logged into by one test only, with a wrong PIN first: login state is per process.
PIN_TOKEN = "vault-pin-tests"


@dataclass(frozen=True)
class SoftHsm:
    config: Path

    def url(self, prefix: str, token: str = TOKEN, **query: str) -> str:
        extra = "".join(f"&{name}={value}" for name, value in query.items())
        return f"pkcs11:token={token};object={prefix}?module-path={MODULE}{extra}"


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    util = shutil.which("softhsm2-util")
    if util is None or not Path(MODULE).exists():
        pytest.fail(
            "SoftHSM2 is required (Debian/Ubuntu: apt-get install softhsm2); "
            f"softhsm2-util={util}, {MODULE} exists={Path(MODULE).exists()}"
        )
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    config = root / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(config)
    for label in (TOKEN, PIN_TOKEN):
        subprocess.run(
            [util, "--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", PIN],
            check=True,
            capture_output=True,
        )
    yield SoftHsm(config)
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
def prefix() -> str:
    return f"t{secrets.token_hex(4)}"


@pytest.fixture
def provider(softhsm: SoftHsm, prefix: str) -> Pkcs11KeyProvider:
    return Pkcs11KeyProvider.from_url(softhsm.url(prefix), PIN)


def token_objects(prefix: str) -> dict[str, dict[Attribute, object]]:
    """What the token holds under a prefix, read through a session of our own."""
    token = pkcs11.lib(MODULE).get_token(token_label=TOKEN)
    # Not logged in ourselves: the provider's login is the process's, and closing a
    # logged-in session would log the provider out.
    session = token.open()
    try:
        found = {}
        for key in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
            label = str(key[Attribute.LABEL])
            if label.startswith(f"{prefix}-"):
                found[label] = {
                    attribute: key[attribute]
                    for attribute in (
                        Attribute.KEY_TYPE,
                        Attribute.TOKEN,
                        Attribute.SENSITIVE,
                        Attribute.ALWAYS_SENSITIVE,
                        Attribute.EXTRACTABLE,
                        Attribute.NEVER_EXTRACTABLE,
                        Attribute.LOCAL,
                        Attribute.ENCRYPT,
                        Attribute.DECRYPT,
                        Attribute.SIGN,
                        Attribute.WRAP,
                        Attribute.UNWRAP,
                        Attribute.VALUE_LEN,
                    )
                }
                with pytest.raises(AttributeSensitive):
                    key[Attribute.VALUE]
        return found
    finally:
        session.close()


# -- the URL ------------------------------------------------------------------------------


def test_url_in_rfc_7512_form_is_understood():
    url = Pkcs11Url.parse(
        "pkcs11:token=My%20HSM;serial=0123abcd;object=prod-vault"
        "?module-path=/opt/hsm/lib%2Dp11.so&pin-source=file:/run/secrets/pin"
    )
    assert url == Pkcs11Url(
        module_path="/opt/hsm/lib-p11.so",
        token_label="My HSM",
        token_serial="0123abcd",
        prefix="prod-vault",
        pin_source="file:/run/secrets/pin",
    )


def test_module_path_may_sit_among_the_path_attributes_and_object_defaults_to_vault():
    url = Pkcs11Url.parse(f"pkcs11:token=vault;module-path={MODULE}")
    assert (url.module_path, url.token_label, url.prefix) == (MODULE, "vault", "vault")


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("pkcs11:token=vault", "module-path"),
        (f"pkcs11:object=x?module-path={MODULE}", "token="),
        (f"pkcs11:token=vault;slot=1?module-path={MODULE}", "'slot'"),
        (f"pkcs11:token=vault;token=other?module-path={MODULE}", "twice"),
        (f"pkcs11:token=vault;object=a/b?module-path={MODULE}", "object="),
        ("pkcs11token=vault", "pkcs11:"),
    ],
)
def test_malformed_url_is_refused_with_the_reason(url, complaint):
    with pytest.raises(VaultError) as refused:
        Pkcs11Url.parse(url)
    assert complaint in refused.value.message


def test_pin_value_never_appears_in_errors_or_repr():
    secret = "s3cr3t-pin"
    with pytest.raises(VaultError) as refused:
        Pkcs11Url.parse(f"pkcs11:token=vault;pin-value={secret}?module-path={MODULE}")
    assert secret not in refused.value.message
    url = Pkcs11Url.parse(f"pkcs11:token=vault?module-path={MODULE}&pin-value={secret}")
    assert secret not in repr(url)
    assert url.pin(None) == secret


def test_pin_from_the_setting_wins_over_pin_source_and_pin_source_over_pin_value(tmp_path):
    pin_file = tmp_path / "pin"
    pin_file.write_text("from-file\n")
    url = Pkcs11Url.parse(
        f"pkcs11:token=vault?module-path={MODULE}&pin-source=file:{pin_file}&pin-value=inline"
    )
    assert url.pin("from-setting") == "from-setting"
    assert url.pin(None) == "from-file"
    assert Pkcs11Url.parse(f"pkcs11:token=v?module-path={MODULE}&pin-source={pin_file}").pin(
        None
    ) == ("from-file")
    with pytest.raises(VaultError):
        Pkcs11Url.parse(f"pkcs11:token=vault?module-path={MODULE}").pin(None)
    with pytest.raises(KeyProviderError):
        Pkcs11Url.parse(
            f"pkcs11:token=vault?module-path={MODULE}&pin-source={tmp_path / 'absent'}"
        ).pin(None)


# -- the token ----------------------------------------------------------------------------


def test_first_use_generates_a_sensitive_non_extractable_master_key_and_index_key(provider, prefix):
    objects = token_objects(prefix)
    (master,) = provider.master_key_ids()
    assert set(objects) == {master, f"{prefix}-index"}
    assert master.startswith(f"{prefix}-master-000001-")
    for attributes in objects.values():
        assert attributes[Attribute.TOKEN] is True
        assert attributes[Attribute.SENSITIVE] is True
        assert attributes[Attribute.ALWAYS_SENSITIVE] is True
        assert attributes[Attribute.EXTRACTABLE] is False
        assert attributes[Attribute.NEVER_EXTRACTABLE] is True
        # Generated inside the token, never imported.
        assert attributes[Attribute.LOCAL] is True
        assert attributes[Attribute.WRAP] is False
        assert attributes[Attribute.UNWRAP] is False
        assert attributes[Attribute.VALUE_LEN] == 32
    assert objects[master][Attribute.KEY_TYPE] == KeyType.AES
    assert objects[master][Attribute.ENCRYPT] is True
    assert objects[master][Attribute.SIGN] is False
    index = objects[f"{prefix}-index"]
    assert index[Attribute.KEY_TYPE] == KeyType.GENERIC_SECRET
    assert index[Attribute.SIGN] is True
    assert index[Attribute.ENCRYPT] is False


def test_wrapped_key_unwraps_only_under_its_own_context(provider):
    key = os.urandom(32)
    master, wrapped = provider.wrap(key, b"patient-kek|p1|k1")
    assert master == provider.current_master_key_id()
    assert key not in wrapped
    assert provider.unwrap(master, wrapped, b"patient-kek|p1|k1") == key
    # Random nonces: wrapping the same key twice never gives the same bytes.
    assert provider.wrap(key, b"patient-kek|p1|k1")[1] != wrapped
    with pytest.raises(IntegrityError):
        provider.unwrap(master, wrapped, b"patient-kek|p2|k1")


@pytest.mark.parametrize("position", [0, 1, 13, -1])
def test_tampered_wrapped_key_is_refused(provider, position):
    master, wrapped = provider.wrap(os.urandom(32), b"context")
    tampered = bytearray(wrapped)
    tampered[position] ^= 0x01
    with pytest.raises(IntegrityError):
        provider.unwrap(master, bytes(tampered), b"context")
    with pytest.raises(IntegrityError):
        provider.unwrap(master, wrapped[:12], b"context")


def test_wrapped_key_names_its_master_key_and_no_other_opens_it(provider):
    old, wrapped = provider.wrap(b"k" * 32, b"context")
    new = provider.rotate()
    with pytest.raises(IntegrityError):
        provider.unwrap(new, wrapped, b"context")
    with pytest.raises(IntegrityError):
        provider.unwrap("not-a-key-of-this-vault", wrapped, b"context")
    assert provider.unwrap(old, wrapped, b"context") == b"k" * 32


def test_rotation_makes_a_new_current_key_and_keeps_the_old_one_for_unwrapping(provider, prefix):
    old, wrapped = provider.wrap(b"k" * 32, b"context")
    new = provider.rotate()
    newest = provider.rotate()
    assert new.startswith(f"{prefix}-master-000002-")
    assert newest.startswith(f"{prefix}-master-000003-")
    assert provider.master_key_ids() == [old, new, newest]
    assert provider.current_master_key_id() == newest
    assert provider.wrap(b"x" * 32, b"context")[0] == newest
    assert provider.unwrap(old, wrapped, b"context") == b"k" * 32
    assert set(token_objects(prefix)) == {old, new, newest, f"{prefix}-index"}


def test_rotation_by_another_process_is_seen_at_the_next_wrap(softhsm, provider, prefix):
    operator = Pkcs11KeyProvider.from_url(softhsm.url(prefix), PIN)
    new = operator.rotate()
    assert provider.current_master_key_id() == new
    assert provider.wrap(b"k" * 32, b"context")[0] == new


def test_retirement_destroys_the_key_object_in_the_token(provider, prefix):
    old, wrapped = provider.wrap(b"k" * 32, b"context")
    assert provider.unwrap(old, wrapped, b"context") == b"k" * 32  # its handle is cached now
    new = provider.rotate()
    provider.retire(old)
    assert provider.master_key_ids() == [new]
    assert old not in token_objects(prefix)
    with pytest.raises(IntegrityError):
        provider.unwrap(old, wrapped, b"context")


def test_a_master_key_carries_the_day_it_was_made(provider, prefix):
    # Retirement waits out the backup retention period from the day a key was replaced.
    before = datetime.now(UTC)
    made = provider.master_key_created_at(provider.rotate())
    assert made is not None
    # Kept to the day, and read as its end: a wait counted from it is never short.
    assert before < made <= before + timedelta(days=1)
    assert made.time() == time.min
    assert provider.master_key_created_at(f"{prefix}-index") is None


def test_retirement_by_another_process_leaves_no_usable_cached_handle(softhsm, provider, prefix):
    old, wrapped = provider.wrap(b"k" * 32, b"context")
    assert provider.unwrap(old, wrapped, b"context") == b"k" * 32
    operator = Pkcs11KeyProvider.from_url(softhsm.url(prefix), PIN)
    operator.rotate()
    operator.retire(old)
    with pytest.raises(IntegrityError):
        provider.unwrap(old, wrapped, b"context")


def test_current_or_foreign_key_cannot_be_retired(provider, prefix):
    with pytest.raises(VaultError):
        provider.retire(provider.current_master_key_id())
    provider.rotate()
    with pytest.raises(VaultError):
        provider.retire(f"{prefix}-index")
    assert len(provider.master_key_ids()) == 2
    assert f"{prefix}-index" in token_objects(prefix)


def test_blind_index_is_a_keyed_digest_made_by_the_token(softhsm, provider, prefix):
    digest = provider.blind_index("patient-identifier", b"ins|185077500000101")
    assert len(digest) == 32
    assert digest == provider.blind_index("patient-identifier", b"ins|185077500000101")
    assert digest != provider.blind_index("patient-identifier", b"ins|185077500000102")
    assert digest != provider.blind_index("content", b"ins|185077500000101")
    # Same token and prefix, same key: another process indexes alike.
    again = Pkcs11KeyProvider.from_url(softhsm.url(prefix), PIN)
    assert again.blind_index("patient-identifier", b"ins|185077500000101") == digest
    # Another vault sharing the token has its own index key.
    other = Pkcs11KeyProvider.from_url(softhsm.url(f"{prefix}x"), PIN)
    assert other.blind_index("patient-identifier", b"ins|185077500000101") != digest
    # Rotation concerns master keys only: the index (and every lookup) stays the same.
    provider.rotate()
    assert provider.blind_index("patient-identifier", b"ins|185077500000101") == digest


def test_large_values_are_indexed_without_sending_them_to_the_token(provider):
    big = os.urandom(8 * 1024 * 1024)
    assert provider.blind_index("content", big) == provider.blind_index("content", big)
    assert provider.blind_index("content", big) != provider.blind_index("content", big[:-1])


def test_concurrent_threads_share_the_token_safely(provider):
    def work(number: int) -> None:
        key = number.to_bytes(4, "big") * 8
        context = f"patient-kek|{number}".encode()
        master, wrapped = provider.wrap(key, context)
        assert provider.unwrap(master, wrapped, context) == key
        assert provider.blind_index("ins", key) == provider.blind_index("ins", key)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(100)))
    rotating = threading.Thread(target=provider.rotate)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(work, number) for number in range(30)]
        rotating.start()
        for future in futures:
            future.result()
    rotating.join()
    assert len(provider.master_key_ids()) == 2


def test_readiness_check_passes_against_a_live_token(provider):
    provider.check()


def test_wrong_pin_is_refused_and_the_right_one_then_works(softhsm, prefix):
    with pytest.raises(KeyProviderError) as refused:
        Pkcs11KeyProvider.from_url(softhsm.url(prefix, token=PIN_TOKEN), "0000-wrong")
    assert "0000-wrong" not in refused.value.message
    assert refused.value.status_code == 503
    provider = Pkcs11KeyProvider.from_url(softhsm.url(prefix, token=PIN_TOKEN), PIN)
    master, wrapped = provider.wrap(b"k" * 32, b"c")
    assert provider.unwrap(master, wrapped, b"c") == b"k" * 32


def test_pin_source_file_logs_in(softhsm, prefix, tmp_path):
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    provider = key_provider_from_url(softhsm.url(prefix, **{"pin-source": f"file:{pin_file}"}))
    assert isinstance(provider, Pkcs11KeyProvider)
    assert provider.master_key_ids()


def test_unknown_token_or_module_is_a_clear_error(softhsm, prefix, tmp_path):
    with pytest.raises(KeyProviderError) as missing:
        Pkcs11KeyProvider.from_url(softhsm.url(prefix, token="no-such-token"), PIN)
    assert "No PKCS#11 token" in missing.value.message
    with pytest.raises(VaultError) as no_module:
        Pkcs11KeyProvider.from_url(
            f"pkcs11:token={TOKEN}?module-path={tmp_path / 'absent.so'}", PIN
        )
    assert "does not exist" in no_module.value.message


def test_key_service_patient_keys_round_trip_through_the_token(provider):
    keys = KeyService(provider, cache_seconds=0)
    data_key = os.urandom(32)
    kek_context = b"patient-kek|p1"
    master, wrapped_kek = provider.wrap(os.urandom(32), kek_context)
    kek_bytes = provider.unwrap(master, wrapped_kek, kek_context)
    kek = Kek(id="k1", key=kek_bytes)
    sealed = keys.wrap_data_key(kek, data_key, b"dek|doc-1")
    assert keys.unwrap_data_key(kek, sealed, b"dek|doc-1") == data_key
    with pytest.raises(IntegrityError):
        keys.unwrap_data_key(kek, sealed, b"dek|doc-2")


# -- the whole vault on an HSM ------------------------------------------------------------


def test_vault_on_softhsm_stores_reads_back_and_rotates(
    softhsm, services, database_url, prefix, tmp_path
):
    url = softhsm.url(prefix)
    content = os.urandom(150 * 1024)  # several STREAM segments
    with own_vault(database_url, tmp_path / "data", key_provider=url, pkcs11_pin=PIN) as vault:
        patient_id, ins_value = vault.create_patient(11)
        _, binary = vault.publish(patient_id, content, "application/octet-stream")
        assert vault.download(binary, ins_value) == content
        first_master = vault.services.key_provider.current_master_key_id()
        assert first_master.startswith(f"{prefix}-master-")
        assert first_master in token_objects(prefix)
        assert not (tmp_path / "data" / "keyring.json").exists()

        with vault.services.engine.connect() as connection:
            masters = set(connection.scalars(text("SELECT master_key_id FROM patient_keys")))
        assert masters == {first_master}
        untouched = ["documents", "document_versions", "binaries", "blob_chunks", "patients"]
        before = snapshot(vault.services.engine, untouched)

        environment = {
            "VAULT_DATABASE_URL": database_url,
            "VAULT_DATA_DIR": str(tmp_path / "data"),
            "VAULT_KEY_PROVIDER": url,
            "VAULT_PKCS11_PIN": PIN,
        }
        get_settings.cache_clear()
        try:
            rotated = CliRunner().invoke(cli, ["keys", "rotate"], env=environment)
            assert rotated.exit_code == 0, rotated.output
            new_master = vault.services.key_provider.current_master_key_id()
            assert new_master != first_master
            assert f"new master key {new_master}; 1 patient keys rewrapped" in rotated.output
            assert snapshot(vault.services.engine, untouched) == before

            vault.services.keys.forget()
            assert vault.download(binary, ins_value) == content

            retired = CliRunner().invoke(
                cli, ["keys", "retire", "--retention-days", "0"], env=environment
            )
            assert retired.exit_code == 0, retired.output
            assert "retired 1 master keys" in retired.output
        finally:
            get_settings.cache_clear()

        assert first_master not in token_objects(prefix)
        vault.services.keys.forget()
        assert vault.download(binary, ins_value) == content
        second_id, second_ins = vault.create_patient(12)
        _, second_binary = vault.publish(second_id, b"%PDF-1.7 after rotation")
        assert vault.download(second_binary, second_ins) == b"%PDF-1.7 after rotation"
        with vault.services.engine.connect() as connection:
            masters = set(connection.scalars(text("SELECT master_key_id FROM patient_keys")))
        assert masters == {new_master}
