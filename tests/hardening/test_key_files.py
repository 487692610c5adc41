"""Key files are created whole or not at all: a SIGKILL while a key file is first written
(the embedded issuer's key, the audit signing key, the keyring, or a ``vault restore keys``)
leaves a data directory that starts, and workers racing to create the same key on a fresh
data directory all end up with the one key that won."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from vault.audit.signing import load_private_key
from vault.backup import keys as key_backup
from vault.identity.tokens import EmbeddedIssuer
from vault.settings import Settings
from vault.storage.keys.local import LocalKeyProvider

# Runs in a child process: the first write to a file opened with os.fdopen (how every key
# file is written) puts half its bytes on disk, says so, and hangs until the parent kills it.
CHILD = r"""
import os, pickle, sys, time
from pathlib import Path

marker = Path(sys.argv[2])
real_fdopen = os.fdopen

class Held:
    def __init__(self, handle):
        self._handle = handle
    def write(self, data):
        self._handle.write(data[: max(1, len(data) // 2)])
        self._handle.flush()
        os.fsync(self._handle.fileno())
        marker.write_text("held")
        time.sleep(600)
    def __getattr__(self, name):
        return getattr(self._handle, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)

os.fdopen = lambda fd, *args, **kwargs: Held(real_fdopen(fd, *args, **kwargs))
data_dir = Path(sys.argv[3])
kind = sys.argv[1]
if kind == "issuer":
    from vault.identity.tokens import EmbeddedIssuer
    EmbeddedIssuer(data_dir, "http://testserver", "vault")
elif kind == "audit-signing":
    from vault.audit.signing import load_private_key
    load_private_key(None, data_dir)
elif kind == "keyring":
    from vault.storage.keys.local import LocalKeyProvider
    LocalKeyProvider(data_dir / "keyring.json")
elif kind == "restore":
    from vault.backup import keys
    material, settings = pickle.loads(Path(sys.argv[4]).read_bytes())
    keys.install(material, settings)
"""


def _kill_during_first_write(tmp_path: Path, kind: str, *extra: str) -> None:
    marker = tmp_path / "held"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, str(marker), str(tmp_path / "data"), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if child.poll() is not None:
                pytest.fail(f"the child ended before writing: {child.stderr.read().decode()}")
            assert time.monotonic() < deadline, "the child never reached the key file's write"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stderr.close()


def _issuer_kid(data_dir: Path) -> str:
    return EmbeddedIssuer(data_dir, "http://testserver", "vault").kid


def _audit_public_key(data_dir: Path) -> bytes:
    return (
        load_private_key(None, data_dir)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def _keyring_identity(data_dir: Path) -> tuple[str, bytes]:
    provider = LocalKeyProvider(data_dir / "keyring.json")
    return provider.current_master_key_id(), provider.blind_index("test", b"same keys?")


OPENERS = {"issuer": _issuer_kid, "audit-signing": _audit_public_key, "keyring": _keyring_identity}


@pytest.mark.parametrize("kind", sorted(OPENERS))
def test_a_kill_during_a_key_files_first_write_leaves_a_data_directory_that_starts(
    tmp_path: Path, kind: str
):
    _kill_during_first_write(tmp_path, kind)

    data_dir = tmp_path / "data"
    opened = OPENERS[kind](data_dir)
    assert OPENERS[kind](data_dir) == opened  # the key the restart made is the one kept


def test_a_kill_during_restore_keys_leaves_no_key_file_that_stops_the_next_restore(
    tmp_path: Path,
):
    source = tmp_path / "source"
    _issuer_kid(source)
    _audit_public_key(source)
    LocalKeyProvider(source / "keyring.json")
    settings = Settings(data_dir=tmp_path / "data", database_url="sqlite://")
    original = Settings(data_dir=source, database_url="sqlite://")
    material = key_backup.collect(original)
    held = tmp_path / "material.pickle"
    held.write_bytes(pickle.dumps((material, settings)))

    _kill_during_first_write(tmp_path, "restore", str(held))

    written = key_backup.install(material, settings)
    assert {path.name for path in written} == {"keyring.json", *key_backup.DATA_DIR_KEY_FILES}
    for path in written:
        assert path.read_bytes() == (source / path.name).read_bytes()
    assert _issuer_kid(settings.data_dir) == _issuer_kid(source)


def _race(kind: str, data_dir: Path, workers: int) -> tuple[list[object], list[BaseException]]:
    start = threading.Barrier(workers)
    results: list[object] = []
    failures: list[BaseException] = []

    def open_key() -> None:
        start.wait()
        try:
            results.append(OPENERS[kind](data_dir))
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            failures.append(error)

    threads = [threading.Thread(target=open_key) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, failures


@pytest.mark.parametrize("kind", sorted(OPENERS))
def test_workers_racing_on_a_fresh_data_directory_all_use_the_one_key_that_won(
    tmp_path: Path, kind: str
):
    for round_number in range(8):
        results, failures = _race(kind, tmp_path / f"round-{round_number}", workers=12)
        assert failures == []
        assert len(results) == 12
        assert len(set(map(repr, results))) == 1
