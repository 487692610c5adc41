"""Real processes for the hardening tests: ``vault serve`` on a free port, the ``vault``
command, a PostgreSQL database of their own, and a private PostgreSQL cluster that a test
may stop and start without touching the machine's shared one."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import psycopg

from tests.conftest import ADMIN_URL
from vault.migrations import upgrade

VAULT = str(Path(sys.executable).with_name("vault"))


def _pg_bin() -> Path:
    """Debian's server binaries (initdb, pg_ctl), newest major version first."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
# Whatever is configured, tokens name this issuer; servers on any port accept them.
BASE_URL = "http://vault.hardening.test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def vault_env(database_url: str, data_dir: Path, blob_store: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "VAULT_DATABASE_URL": database_url,
        "VAULT_DATA_DIR": str(data_dir),
        "VAULT_BLOB_STORE": blob_store,
        "VAULT_BASE_URL": BASE_URL,
        "VAULT_LOG_LEVEL": "WARNING",
        **extra,
    }


def run_vault(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the caller checks the exit code
        [VAULT, *args], env=env, capture_output=True, text=True, timeout=120
    )


class VaultServer:
    """One ``vault serve`` process; started again on a new port after each kill."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        port = free_port()
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [VAULT, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"vault serve exited:\n{self.tail()}")
            with suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self.url
            time.sleep(0.05)
        raise AssertionError(f"vault serve did not come up:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler, no flush, no goodbye."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@contextmanager
def scratch_database() -> Iterator[str]:
    """A database of the shared PostgreSQL, migrated, dropped afterwards."""
    name = f"vault_hardening_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PrivateCluster:
    """A PostgreSQL cluster in a temporary directory, on a free port, that only this test
    uses: stopping it disturbs no other test database. PostgreSQL refuses to run as root,
    so as root it runs as the ``postgres`` user."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vault-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        done = subprocess.run(  # noqa: PLW1510 - checked below with the output
            [*prefix, *command], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}\n{done.stderr}"

    def init(self) -> None:
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        with suppress(AssertionError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
