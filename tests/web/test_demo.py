"""``vault demo``: seeds the demonstration accounts once, says how to sign in, and is
refused when the embedded issuer is off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VAULT = str(Path(sys.executable).with_name("vault"))


def run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("VAULT_")}
    return subprocess.run(
        [VAULT, "demo"],
        env={**clean, "VAULT_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_vault_demo_seeds_once_and_says_how_to_sign_in(tmp_path):
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Comptes de démonstration créés." in first.stdout
    assert "Se connecter en tant que Camille Martin" in first.stdout
    assert "Se connecter en tant que Lucas Martin" in first.stdout
    second = run(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "déjà présents" in second.stdout


def test_vault_demo_is_refused_when_the_embedded_issuer_is_off(tmp_path):
    refused = run(tmp_path, VAULT_EMBEDDED_ISSUER="false")
    assert refused.returncode != 0
    assert "embedded issuer is off" in refused.stderr
    assert refused.stdout == ""
