"""``vault serve --workers N``: each worker process listens on a socket of its own.

uvicorn's supervisor binds one socket that all its workers share, and whichever worker
wakes first accepts every connection then waiting: a burst of new keep-alive connections
(a proxy opening its pool, clients starting together) lands on one worker while the others
idle -- 7 of 8 connections on one of two workers, measured under the benchmark
(docs/performance.md). With ``SO_REUSEPORT`` every worker listens on a socket of its own,
bound to the same address, and the kernel spreads new connections across them.

uvicorn's supervisor is kept (its restarts of dead or hung workers, its signals, its
health checks): only the sockets it hands to the workers it starts differ.
"""

from __future__ import annotations

import socket

from uvicorn.config import Config
from uvicorn.supervisors.multiprocess import Multiprocess


def reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bound = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    bound.bind((host, port))
    bound.set_inheritable(True)
    return bound


class SocketPerWorker(Multiprocess):
    """uvicorn's supervisor, reading ``sockets`` once for each worker it starts (when it
    starts them, when one dies, on a restart): each read binds a new socket for that
    worker alone."""

    def __init__(self, config: Config) -> None:
        self._handed: list[socket.socket] = []
        super().__init__(config, sockets=[])

    @property
    def sockets(self) -> list[socket.socket]:
        bound = reuse_port_socket(self.config.host, self.config.port)
        self._handed.append(bound)
        return [bound]

    @sockets.setter
    def sockets(self, _shared: list[socket.socket]) -> None:
        """uvicorn's constructor stores the shared sockets here; there are none."""

    def init_processes(self) -> None:
        super().init_processes()
        self._close_handed()

    def restart_all(self) -> None:
        super().restart_all()
        self._close_handed()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._close_handed()

    def _close_handed(self) -> None:
        # A started worker holds its own copy. The supervisor's would keep the socket in
        # the kernel's group after its worker died, and the connections sent to it would
        # wait for ever for an accept.
        for bound in self._handed:
            bound.close()
        self._handed.clear()
