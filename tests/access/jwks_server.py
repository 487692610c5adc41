"""A JWKS served over real HTTP on loopback, for the tests of remote key sets."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JwksServer:
    """A real HTTP server on loopback that serves a JWKS the test can change and counts how
    often it is asked."""

    def __init__(self) -> None:
        self.document: dict = {"keys": []}
        self.requests = 0
        self.up = True
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                if not owner.up:
                    self.send_error(503)
                    return
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def publish(self, *keys) -> None:
        self.document = {"keys": [key.as_dict(private=False) for key in keys]}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serving() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()
