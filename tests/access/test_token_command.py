"""`vault token`: its lifetime comes from the configuration unless the command says."""

from __future__ import annotations

import base64
import json

import pytest
from typer.testing import CliRunner

from vault.cli import app as cli
from vault.settings import get_settings


def _lifetime(token: str) -> int:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["exp"]) - int(claims["iat"])


@pytest.fixture
def configured(monkeypatch, tmp_path):
    monkeypatch.setenv("VAULT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VAULT_TOKEN_TTL_SECONDS", "120")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("configured")
def test_vault_token_lives_as_long_as_vault_token_ttl_seconds_says():
    minted = CliRunner().invoke(cli, ["token", "--role", "patient", "--sub", "185077512345653"])
    assert minted.exit_code == 0, minted.output
    assert _lifetime(minted.stdout.strip()) == 120


@pytest.mark.usefixtures("configured")
def test_vault_token_ttl_option_overrides_the_configured_lifetime():
    minted = CliRunner().invoke(
        cli, ["token", "--role", "patient", "--sub", "185077512345653", "--ttl", "30"]
    )
    assert minted.exit_code == 0, minted.output
    assert _lifetime(minted.stdout.strip()) == 30
