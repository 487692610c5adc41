"""Graceful shutdown of a real `vault serve`: SIGTERM in the middle of a large upload lets
the upload finish whole, then the process exits 0."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.backup.support import open_vault, vault_settings
from tests.factories import Tokens, document_reference, ins, patient_resource
from vault.identity.tokens import EmbeddedIssuer
from vault.models import Binary, Document

CONTENT = os.urandom(6 * 1024 * 1024)
PIECE = 256 * 1024


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, env: dict[str, str], port: int) -> None:
        vault = Path(sys.executable).parent / "vault"
        self.process = subprocess.Popen(
            [str(vault), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.shutting_down = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=30)
        assert self.process.stderr is not None
        self.process.stderr.close()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "Shutting down" in line:
                self.shutting_down.set()

    def wait_ready(self, base: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "".join(self.lines)
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail("the server never became ready:\n" + "".join(self.lines))


@pytest.mark.slow
def test_sigterm_during_a_large_upload_lets_it_finish_whole_and_exits_zero(
    tmp_path: Path, fresh_database
):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with fresh_database() as url:
        settings = vault_settings(url, tmp_path / "data", f"file://{tmp_path / 'blobs'}")
        settings = settings.model_copy(update={"base_url": base})
        tokens = Tokens(EmbeddedIssuer(settings.data_dir, base, settings.token_audience))
        env = {
            **os.environ,
            "VAULT_DATABASE_URL": url,
            "VAULT_DATA_DIR": str(settings.data_dir),
            "VAULT_BLOB_STORE": settings.blob_store,
            "VAULT_BASE_URL": base,
            "VAULT_LOG_JSON": "true",
        }
        server = Server(env, port)
        try:
            server.wait_ready(base)
            ins_value = ins(81)
            created = httpx.post(
                f"{base}/fhir/Patient",
                json=patient_resource(ins_value),
                headers=tokens.patient(ins_value),
                timeout=30,
            )
            assert created.status_code == 201, created.text
            patient_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]
            body = json.dumps(
                document_reference({"reference": f"Patient/{patient_id}"}, CONTENT)
            ).encode()

            half_sent, proceed = threading.Event(), threading.Event()
            outcome: dict[str, httpx.Response | BaseException] = {}

            def slow_body() -> Iterator[bytes]:
                half = len(body) // 2
                for start in range(0, half, PIECE):
                    yield body[start : min(start + PIECE, half)]
                half_sent.set()
                proceed.wait(timeout=60)
                for start in range(half, len(body), PIECE):
                    yield body[start : start + PIECE]

            def upload() -> None:
                try:
                    outcome["response"] = httpx.post(
                        f"{base}/fhir/DocumentReference",
                        content=slow_body(),
                        headers={**tokens.professional(), "Content-Length": str(len(body))},
                        timeout=120,
                    )
                except BaseException as error:  # noqa: BLE001 - reported below
                    outcome["response"] = error

            uploader = threading.Thread(target=upload)
            uploader.start()
            assert half_sent.wait(timeout=60)
            server.process.send_signal(signal.SIGTERM)
            assert server.shutting_down.wait(timeout=60), "".join(server.lines)
            proceed.set()
            uploader.join(timeout=120)

            response = outcome["response"]
            assert isinstance(response, httpx.Response), repr(response)
            assert response.status_code == 201, response.text
            assert server.process.wait(timeout=60) == 0, "".join(server.lines)
        finally:
            server.close()

        # The server is gone; what it left is whole: one document, one blob, no partial write.
        blobs = [path for path in (tmp_path / "blobs").rglob("*") if path.is_file()]
        assert len(blobs) == 1
        assert not blobs[0].name.endswith(".part")
        with open_vault(settings) as vault:
            with vault.services.session_factory() as session:
                assert session.scalar(select(func.count()).select_from(Document)) == 1
                binary = session.scalars(select(Binary)).one()
            assert vault.download(binary.id, ins_value) == CONTENT
        # Every line the server wrote is structured, and none carries the content.
        logged = [json.loads(line) for line in server.lines if line.strip()]
        assert any(line["event"] == "Shutting down" for line in logged)
        encoded = base64.b64encode(CONTENT[:48]).decode()
        assert not any(encoded in json.dumps(line) for line in logged)
