"""A real server for the clients to talk to: ``vault serve`` in a subprocess, with its
workers, on the benchmark's database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from vault.bench.stats import children, cpu_seconds
from vault.errors import VaultError
from vault.settings import Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def listening_sockets(port: int) -> int | None:
    """How many sockets listen on the port (each worker has its own: vault serve), or None
    where the system does not say (no /proc/net/tcp)."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return None
    local = f":{port:04X}"
    count = 0
    for table in tables:
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            # local_address is hex ip:port; state 0A is LISTEN.
            if fields[1].endswith(local) and fields[3] == "0A":
                count += 1
    return count


class Server:
    def __init__(self, settings: Settings, workers: int, log_path: Path) -> None:
        self.settings = settings
        self.workers = workers
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "VAULT_DATABASE_URL": self.settings.effective_database_url,
                "VAULT_DATA_DIR": str(self.settings.data_dir.resolve()),
                "VAULT_KEY_PROVIDER": self.settings.effective_key_provider,
                "VAULT_BLOB_STORE": self.settings.blob_store,
                # Unchanged: it names the token issuer and the audit log's origin.
                "VAULT_BASE_URL": self.settings.base_url,
                "VAULT_LOG_LEVEL": "WARNING",
            }
        )
        return env

    def start(self, timeout: float = 120.0) -> None:
        # Exactly ``vault serve``, as operators run it.
        command = [
            sys.executable,
            "-c",
            "from vault.cli import main; main()",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command, env=self.environment(), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise VaultError(f"the server exited at start; see {self.log_path}")
            try:
                up = httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                up = False
            # Every worker listening: connections opened while one still starts would all
            # go to the others, and stay there for the whole run (keep-alive).
            if up and listening_sockets(self.port) in (None, self.workers):
                return
            time.sleep(0.2)
        self.stop()
        raise VaultError(f"the server did not answer within {timeout:.0f} s; see {self.log_path}")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's workers, or the server itself."""
        if self._process is None:
            return []
        found = children(self._process.pid)
        return found or [self._process.pid]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.worker_pids())

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()
