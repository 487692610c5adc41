"""``vault serve --workers N``: each worker listens on a TCP socket of its own
(SO_REUSEPORT), so that the kernel spreads new connections across the workers instead of
the first to wake taking them all; a dead worker's socket leaves the group with it."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.hardening.servers import free_port, scratch_database, vault_env
from vault.commands.serving import reuse_port_socket


def test_a_workers_socket_is_bound_as_tcp_so_its_connections_get_no_delay() -> None:
    bound = reuse_port_socket("127.0.0.1", 0)
    bound.listen()
    try:
        assert bound.proto == socket.IPPROTO_TCP
        assert bound.get_inheritable()
        with socket.create_connection(bound.getsockname()):
            accepted, _ = bound.accept()
            with accepted:
                # What asyncio checks before it sets TCP_NODELAY on a connection: without
                # it each keep-alive response waits ~40 ms for the client's delayed ACK.
                assert accepted.proto == socket.IPPROTO_TCP
    finally:
        bound.close()


def test_several_sockets_listen_on_one_address() -> None:
    first = reuse_port_socket("127.0.0.1", 0)
    second = reuse_port_socket("127.0.0.1", first.getsockname()[1])
    try:
        first.listen()
        second.listen()
        assert first.getsockname() == second.getsockname()
    finally:
        first.close()
        second.close()


def serve_command(port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from vault.cli import main; main()",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


@contextmanager
def served(tmp_path: Path, workers: int) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    log = tmp_path / "serve.log"
    with scratch_database() as url, log.open("ab") as output:
        process = subprocess.Popen(
            serve_command(port, workers),
            env=vault_env(url, tmp_path / "data", "db:"),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_up(process, port, log)
            yield process, port
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)


def wait_until_up(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        with suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(log.read_text(errors="replace")[-3000:])


def workers_of(supervisor: int) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    workers = set()
    for pid in children:
        with suppress(FileNotFoundError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.add(int(pid))
    return workers


def holders(port: int, state: str = "established") -> list[int]:
    """The process holding each socket on the port in that state (each connection
    accepted; with ``listening``, each listening socket)."""
    listing = subprocess.run(
        ["ss", "-tnpH", "state", state, f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [int(pid) for pid in re.findall(r"pid=(\d+)", listing)]


def test_connections_opened_together_are_spread_over_the_workers(tmp_path: Path) -> None:
    with served(tmp_path, workers=2) as (process, port), ExitStack() as open_connections:
        workers = wait_for_workers(process.pid, 2, port)
        # A burst of keep-alive connections, as a proxy opening its pool makes: with one
        # shared socket, the worker that wakes first takes (nearly) all of them.
        connections = []
        for _ in range(32):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.connect()
            open_connections.callback(connection.close)
            connections.append(connection)
        for connection in connections:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            assert response.status == 200

        by_worker = holders(port)

        assert len(by_worker) == 32
        assert set(by_worker) == workers


def wait_for_workers(supervisor: int, count: int, port: int) -> set[int]:
    """The workers, once each listens on a socket of its own."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        workers = workers_of(supervisor)
        if len(workers) == count and sorted(holders(port, "listening")) == sorted(workers):
            return workers
        time.sleep(0.1)
    raise AssertionError(f"{count} workers did not come to listen")


def test_a_dead_workers_socket_takes_no_more_connections(tmp_path: Path) -> None:
    with served(tmp_path, workers=2) as (process, port):
        dead = min(wait_for_workers(process.pid, 2, port))
        os.kill(dead, signal.SIGKILL)

        # Every new connection is answered, by the survivor or by the dead worker's
        # replacement: none is left waiting on a socket nobody accepts on.
        for _ in range(40):
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
            assert response.status_code == 200
        replacement = wait_for_workers(process.pid, 2, port)
        assert dead not in replacement


def test_a_port_already_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with scratch_database() as url:
            result = subprocess.run(
                serve_command(port, 2),
                env=vault_env(url, tmp_path / "data", "db:"),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", [2])
def test_a_stop_asked_for_ends_every_worker_cleanly(tmp_path: Path, workers: int) -> None:
    with served(tmp_path, workers=workers) as (process, port):
        started = wait_for_workers(process.pid, workers, port)
        process.send_signal(signal.SIGTERM)

        assert process.wait(timeout=60) == 0
        for pid in started:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            )
