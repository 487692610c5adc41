"""A real browser for the patient's space: Debian's Chromium driven by Playwright, the
vault served by uvicorn on a free loopback port, people signing in at the independent
OpenID provider the tests run on Node (tests/access/oidc_provider), axe-core from npm.

Playwright never downloads a browser here: it launches /usr/bin/chromium, which the test
command installs as it installs SoftHSM2."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from joserfc.jwk import ECKey

from tests.access.test_tokens_oidc import running_provider

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEPS = Path(__file__).resolve().parent / "browser_deps"
AXE = DEPS / "node_modules" / "axe-core" / "axe.min.js"
FAILURES = Path(__file__).resolve().parent / "screenshots"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
WEB_CLIENT = "vault-web"
WEB_SECRET = "vault-web-secret-0123456789abcdef"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def install_axe() -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to install axe-core for the browser tests")
    with (DEPS / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not AXE.is_file():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=DEPS,
                check=True,
                capture_output=True,
                timeout=600,
            )


@dataclass(frozen=True)
class Account:
    login: str
    claims: dict[str, str]


@dataclass(frozen=True)
class WebProvider:
    issuer: str
    jwks_uri: str


def start_provider(workdir: Path, vault_url: str, accounts: list[Account]) -> Iterator[WebProvider]:
    """The OpenID provider with an authorization-code client for the vault's space."""
    signing = ECKey.generate_key("P-256", private=True, auto_kid=True)
    config: dict[str, Any] = {
        "jwks": {"keys": [{**signing.as_dict(private=True), "use": "sig", "alg": "ES256"}]},
        "clients": [
            {
                "client_id": WEB_CLIENT,
                "client_secret": WEB_SECRET,
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "redirect_uris": [f"{vault_url}/login/callback"],
                "post_logout_redirect_uris": [f"{vault_url}/"],
                "token_endpoint_auth_method": "client_secret_basic",
                "id_token_signed_response_alg": "ES256",
                "scope": "openid vault",
            }
        ],
        "resource": "urn:vault",
        "resourceScope": "patient/DocumentReference.rs",
        "audience": "urn:vault:test",
        "extraScopes": ["vault"],
        "accounts": {account.login: account.claims for account in accounts},
    }
    with running_provider(workdir, config) as (issuer, jwks_uri):
        yield WebProvider(issuer, jwks_uri)


class Served:
    """An ASGI app served by uvicorn in a thread, on loopback."""

    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", loop="asyncio", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                pytest.fail("the vault did not start for the browser tests")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def launch(playwright: Any) -> Any:
    if not CHROMIUM.exists():
        pytest.fail(
            "Debian's chromium is needed (scripts/test installs it: apt-get install chromium)"
        )
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations of any impact on the page as it is."""
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, {iframes: false, resultTypes: ['violations']});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))
            }));
        }"""
    )
    return found


def horizontal_overflow(page: Any) -> int:
    return int(
        page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )
