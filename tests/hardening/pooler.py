"""PgBouncer in transaction mode in front of the shared PostgreSQL, on a free port, for as
long as a test needs it. PgBouncer refuses to run as root: as root it runs as the
``postgres`` user, like the private clusters."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from tests.conftest import ADMIN_URL
from tests.hardening.servers import free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class PgBouncer:
    """One PgBouncer whose every database name leads to the same name on the shared
    server, with a pool far smaller than its clients: server connections change hands
    between transactions, which is what a vault behind it must survive."""

    def __init__(self, pool_size: int = 3) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vault-pgbouncer-"))
        self.port = free_port()
        self.pool_size = pool_size
        self.process: subprocess.Popen[bytes] | None = None
        self._as_postgres = os.geteuid() == 0
        self.user = make_url(ADMIN_URL).username or "postgres"

    def start(self) -> None:
        server = make_url(ADMIN_URL)
        user = self.user
        (self.root / "users.txt").write_text(f'"{user}" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.root}\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"admin_users = {user}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 200\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
        )
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            for path in self.root.iterdir():
                shutil.chown(path, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        self.process = subprocess.Popen(
            [*prefix, PGBOUNCER, str(self.root / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"pgbouncer exited:\n{self.tail()}")
            with suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
                return
            time.sleep(0.05)
        raise AssertionError(f"pgbouncer did not come up:\n{self.tail()}")

    def url(self, database_url: str) -> str:
        """``database_url``'s database, reached through this PgBouncer."""
        return (
            make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    def transactions(self) -> dict[str, int]:
        """Transactions PgBouncer has passed on so far, by database name."""
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} dbname=pgbouncer user={self.user}",
            autocommit=True,
            prepare_threshold=None,
        ) as admin:
            cursor = admin.execute("SHOW STATS")
            names = [column.name for column in cursor.description or []]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return {str(row["database"]): int(row["total_xact_count"]) for row in rows}

    def tail(self) -> str:
        log = self.root / "pgbouncer.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
