"""docs/operations.md stays the operators' complete list of settings."""

from __future__ import annotations

from pathlib import Path

from vault.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_every_setting_is_documented_for_operators():
    text = DOC.read_text()
    missing = [
        f"VAULT_{name.upper()}"
        for name in Settings.model_fields
        if f"`VAULT_{name.upper()}`" not in text
    ]
    assert missing == []
