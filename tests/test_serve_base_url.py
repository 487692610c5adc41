"""``vault serve``: its base URL (the issuer of its tokens, the address in its links) is the
address it serves, unless VAULT_BASE_URL is set."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import httpx
import pytest

from tests.notifications.conftest import SENDER, smtp
from vault.settings import served_base_url

VAULT = str(Path(sys.executable).with_name("vault"))

__all__ = ["smtp"]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:9123"),
        ("localhost", "http://localhost:9123"),
        ("0.0.0.0", "http://127.0.0.1:9123"),
        ("::", "http://[::1]:9123"),
        ("::1", "http://[::1]:9123"),
    ],
)
def test_the_base_url_of_a_server_is_the_address_it_serves_reachable_from_here(host, expected):
    assert served_base_url(host, 9123) == expected


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _serving(settings, tmp_path: Path, port: int, **env: str) -> Iterator[tuple[str, Path]]:
    """``vault serve --port PORT --demo`` on the tests' PostgreSQL, with no VAULT_ setting
    but those given; yields its URL and the file its output goes to."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("VAULT_")}
    environment = {
        **clean,
        "VAULT_DATABASE_URL": settings.database_url,
        "VAULT_DATA_DIR": str(settings.data_dir),
        "VAULT_BLOB_STORE": settings.blob_store,
        **env,
    }
    url = f"http://127.0.0.1:{port}"
    output = tmp_path / f"serve-{port}.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [VAULT, "serve", "--host", "127.0.0.1", "--port", str(port), "--demo"],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"vault serve exited: {output.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vault serve did not come up: {output.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url, output
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


class _Browser:
    """What a browser does on loopback and httpx does not: send back the session cookie,
    which is Secure (browsers hold http://127.0.0.1 for a secure context)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, cookies=None)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        response = self.http.request(method, path, headers={"Cookie": cookie}, **kwargs)
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        self.http.cookies.clear()
        return response

    def close(self) -> None:
        self.http.close()


def test_serve_on_another_port_links_the_demo_to_the_address_served(
    services, settings, tmp_path, smtp
):
    """``vault serve --port P --demo`` with no VAULT_BASE_URL: what the demo prints, the
    invitation link a patient hands a caregiver, the link of the e-mail the server sends
    and the issuer's token endpoint all name the port served, not the default one."""
    port = _free_port()
    mail = {
        "VAULT_SMTP_HOST": "127.0.0.1",
        "VAULT_SMTP_PORT": str(smtp.port),
        "VAULT_SMTP_SECURITY": "none",
        "VAULT_SMTP_SENDER": SENDER,
        "VAULT_EMAIL_POLL_SECONDS": "0.2",
    }
    with _serving(settings, tmp_path, port, **mail) as (url, output), closing(_Browser(url)) as web:
        assert f"Ouvrez {url}/ " in output.read_text()
        assert "127.0.0.1:8000" not in output.read_text()
        discovery = web.request("GET", "/.well-known/smart-configuration").json()
        assert discovery["token_endpoint"] == f"{url}/oauth/token"

        home = web.request("GET", "/")
        signed_in = web.request(
            "POST", "/login/demo", data={"account": "patient", "csrf_token": _csrf(home.text)}
        )
        assert signed_in.status_code == 303, signed_in.text
        landed = web.request("GET", signed_in.headers["location"])
        pid = re.search(r"/dossiers/([^/]+)/", landed.headers["location"]).group(1)
        form = web.request("GET", f"/dossiers/{pid}/aidants")
        until = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
        created = web.request(
            "POST",
            f"/dossiers/{pid}/aidants",
            data={
                "csrf_token": _csrf(form.text),
                "droits": "lire",
                "categories": ["10"],
                "jusqu_au": until,
            },
        )
        assert created.status_code == 200, created.text
        code = re.search(r'data-testid="invitation-code">([^<]+)<', created.text).group(1)
        assert f"{url}/invitation?code={code}" in unescape(created.text)

        emails = web.request("GET", f"/dossiers/{pid}/notifications/courriel")
        given = web.request(
            "POST",
            f"/dossiers/{pid}/notifications/courriel/adresse",
            data={"csrf_token": _csrf(emails.text), "adresse": "camille@example.org"},
        )
        assert given.status_code == 303, given.text
        deadline = time.monotonic() + 30
        while not smtp.mailbox.messages() and time.monotonic() < deadline:
            time.sleep(0.1)
        (message,) = smtp.mailbox.messages()
        assert f"{url}/courriel/confirmer?token=" in message.get_content()


def test_an_explicit_base_url_is_kept_whatever_the_port_served(services, settings, tmp_path):
    port = _free_port()
    public = "https://vault.example.test"
    with _serving(settings, tmp_path, port, VAULT_BASE_URL=public) as (url, output):
        assert f"Ouvrez {public}/ " in output.read_text()
        discovery = httpx.get(f"{url}/.well-known/smart-configuration").json()
        assert discovery["token_endpoint"] == f"{public}/oauth/token"
