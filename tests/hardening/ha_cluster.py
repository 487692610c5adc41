"""A PostgreSQL high-availability cluster run by pg_auto_failover (Debian's
``postgresql-15-auto-failover``): a monitor, a primary and a synchronous standby, all on
loopback and free ports in a temporary directory, for the failover drill.

pg_autoctl and PostgreSQL refuse to run as root: as root they run as the ``postgres``
user. Each node runs in a process group of its own, so that the drill can kill a node
outright (its pg_autoctl and its PostgreSQL at once, as when a machine dies): killing the
PostgreSQL alone only gets it restarted in place by its pg_autoctl, which is no failover.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.hardening.servers import PG_BIN, free_port

PG_AUTOCTL = shutil.which("pg_autoctl") or "/usr/bin/pg_autoctl"
DATABASE = "vault"

# The monitor's failure detection, shortened from its defaults (a node found unhealthy
# after 20 s, a primary that cannot be reached given 30 s to demote itself) so that a
# failover takes seconds; each node's keeper demotes itself after losing sight of both
# the monitor and its standby for less than the monitor waits (network_partition_timeout
# below), which keeps a partitioned primary from taking writes beside the new one.
# docs/operations.md says which values production keeps.
MONITOR_SETTINGS = {
    "pgautofailover.health_check_period": "1000",
    "pgautofailover.health_check_timeout": "2000",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "1000",
    "pgautofailover.node_considered_unhealthy_timeout": "4000",
    "pgautofailover.primary_demote_timeout": "6000",
}
NETWORK_PARTITION_TIMEOUT_S = "3"


@dataclass(frozen=True)
class NodeState:
    name: str
    port: int
    reported: str
    goal: str


class ClusterError(RuntimeError):
    pass


class AutoFailoverCluster:
    def __init__(self, log: Callable[[str], None] = lambda _line: None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vault-ha-"))
        self.log = log
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.monitor_port = free_port()
        self.ports = {"node1": free_port(), "node2": free_port()}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_DATA_HOME": str(self.root / "share"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
            "PG_CONFIG": str(PG_BIN / "pg_config"),
            # initdb takes its encoding from the locale: UTF8, not SQL_ASCII.
            "LC_ALL": "C.UTF-8",
            "LANG": "C.UTF-8",
        }

    # -- what the vault connects to ---------------------------------------------------

    def url(self) -> str:
        """Both nodes, and only the one that takes writes: the vault needs no restart
        when the primary changes."""
        hosts = "&".join(f"host=127.0.0.1:{port}" for port in self.ports.values())
        return f"postgresql+psycopg://postgres@/{DATABASE}?{hosts}&target_session_attrs=read-write"

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        self._autoctl(
            "create",
            "monitor",
            "--pgctl",
            str(PG_BIN / "pg_ctl"),
            "--pgdata",
            str(self.root / "monitor"),
            "--pgport",
            str(self.monitor_port),
            "--hostname",
            "127.0.0.1",
            "--auth",
            "trust",
            "--no-ssl",
        )
        self._autoctl(
            "config",
            "set",
            "--pgdata",
            str(self.root / "monitor"),
            "postgresql.listen_addresses",
            "127.0.0.1",
        )
        self._spawn("monitor", "run", "--pgdata", str(self.root / "monitor"))
        self.wait(self._monitor_answers, 60, "the monitor to start")
        with self._monitor() as monitor:
            for name, value in MONITOR_SETTINGS.items():
                monitor.execute(f"ALTER SYSTEM SET {name} = {value}")
            monitor.execute("SELECT pg_reload_conf()")
        self._create_node("node1")
        self.wait(lambda: self._goal("node1") in {"single", "wait_primary"}, 120, "node1")
        self._create_node("node2")
        # pg_basebackup waits for a spread checkpoint (minutes on an idle server) unless
        # one is asked for at once.
        self.wait(self.healthy, 180, "node2 to join as a synchronous standby", self._checkpoint)
        for name in self.ports:
            self._autoctl(
                "config",
                "set",
                "--pgdata",
                str(self.root / name),
                "timeout.network_partition_timeout",
                NETWORK_PARTITION_TIMEOUT_S,
            )

    def states(self) -> list[NodeState]:
        with self._monitor() as monitor:
            rows = monitor.execute(
                "SELECT nodename, nodeport, reportedstate::text, goalstate::text"
                " FROM pgautofailover.node ORDER BY nodeid"
            ).fetchall()
        return [NodeState(str(row[0]), int(row[1]), str(row[2]), str(row[3])) for row in rows]

    def primary(self) -> str | None:
        for node in self.states():
            if (
                node.reported in {"primary", "wait_primary", "single"}
                and node.goal == node.reported
            ):
                return node.name
        return None

    def healthy(self) -> bool:
        """One primary with a synchronous standby, both settled."""
        found = {(node.reported, node.goal) for node in self.states()}
        return found == {("primary", "primary"), ("secondary", "secondary")}

    def kill(self, name: str) -> None:
        """SIGKILL to the node's pg_autoctl and PostgreSQL at once."""
        process = self.processes.pop(name)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        self.wait(lambda: not self._postmaster_alive(name), 30, f"{name}'s PostgreSQL to die")

    def restart(self, name: str) -> None:
        """The killed node comes back and rejoins as a standby (pg_rewind, then catching
        up), so that the next failover has somewhere to go."""
        self._spawn(name, "run", "--pgdata", str(self.root / name))

    def promoted_after(self, killed: str) -> bool:
        """The monitor has made the other node the primary (alone for now)."""
        primary = self.primary()
        return primary is not None and primary != killed

    def stop(self) -> None:
        for process in self.processes.values():
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        self.processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def tail(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}"
            for log in sorted(self.root.glob("*.log"))
        )

    # -- helpers ----------------------------------------------------------------------

    def _create_node(self, name: str) -> None:
        self._spawn(
            name,
            "create",
            "postgres",
            "--pgctl",
            str(PG_BIN / "pg_ctl"),
            "--pgdata",
            str(self.root / name),
            "--pgport",
            str(self.ports[name]),
            "--listen",
            "127.0.0.1",
            "--hostname",
            "127.0.0.1",
            "--name",
            name,
            "--dbname",
            DATABASE,
            "--monitor",
            f"postgres://autoctl_node@127.0.0.1:{self.monitor_port}/pg_auto_failover"
            "?sslmode=disable",
            "--auth",
            "trust",
            "--no-ssl",
            "--run",
        )

    def _command(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return [*prefix, PG_AUTOCTL, *args]

    def _autoctl(self, *args: str) -> None:
        done = subprocess.run(  # noqa: PLW1510 - checked below with the output
            self._command(*args), env=self.env, capture_output=True, text=True, timeout=180
        )
        if done.returncode != 0:
            raise ClusterError(f"pg_autoctl {' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")

    def _spawn(self, name: str, *args: str) -> None:
        with (self.root / f"{name}.log").open("ab") as output:
            self.processes[name] = subprocess.Popen(
                self._command(*args),
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _monitor(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            f"host=127.0.0.1 port={self.monitor_port} dbname=pg_auto_failover user=postgres"
            " client_encoding=utf8",
            autocommit=True,
            connect_timeout=5,
        )

    def _monitor_answers(self) -> bool:
        try:
            with self._monitor() as monitor:
                monitor.execute("SELECT 1 FROM pgautofailover.node LIMIT 1")
        except psycopg.Error:
            return False
        return True

    def _goal(self, name: str) -> str | None:
        return next((node.goal for node in self.states() if node.name == name), None)

    def _checkpoint(self) -> None:
        primary = self.primary()
        if primary is None:
            return
        with (
            suppress(psycopg.Error),
            psycopg.connect(
                f"host=127.0.0.1 port={self.ports[primary]} dbname={DATABASE} user=postgres",
                autocommit=True,
                connect_timeout=5,
            ) as connection,
        ):
            connection.execute("CHECKPOINT")

    def _postmaster_alive(self, name: str) -> bool:
        pid_file = self.root / name / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def wait(
        self,
        condition: Callable[[], bool],
        seconds: float,
        what: str,
        meanwhile: Callable[[], None] | None = None,
    ) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except psycopg.Error:
                pass
            if meanwhile is not None:
                meanwhile()
            time.sleep(0.5)
        raise ClusterError(f"timed out waiting for {what}:\n{self.tail()}")
