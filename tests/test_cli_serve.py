"""``vault serve --workers N``: the socket uvicorn binds for its workers is a TCP socket
asyncio recognises, so accepted connections get TCP_NODELAY (without it, each keep-alive
response waits about 40 ms for the client's delayed ACK: docs/performance.md)."""

from __future__ import annotations

import socket

from uvicorn.config import Config

from vault.cli import keep_tcp_nodelay


def test_the_socket_shared_by_workers_is_bound_as_tcp() -> None:
    keep_tcp_nodelay()
    keep_tcp_nodelay()
    bound = Config("vault.api.app:create_app", host="127.0.0.1", port=0).bind_socket()
    try:
        assert bound.proto == socket.IPPROTO_TCP
        assert bound.family == socket.AF_INET
        assert bound.getsockname()[0] == "127.0.0.1"
        assert bound.get_inheritable()
    finally:
        bound.close()


def test_connections_accepted_on_it_can_be_told_apart_as_tcp() -> None:
    keep_tcp_nodelay()
    bound = Config("vault.api.app:create_app", host="127.0.0.1", port=0).bind_socket()
    bound.listen()
    try:
        with socket.create_connection(bound.getsockname()):
            accepted, _ = bound.accept()
            with accepted:
                # What asyncio checks before it sets TCP_NODELAY on a connection.
                assert accepted.proto == socket.IPPROTO_TCP
    finally:
        bound.close()
