"""The authorization matrix: which document types each profession may read.

Shipped defaults live in ``matrix.json`` beside this module; an operator replaces them with
``VAULT_ACCESS_MATRIX_FILE`` (same format, see docs/access.md). A profession the table does
not name reads nothing but what it authored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from vault.access.state import token_matches
from vault.errors import VaultError

DEFAULT_MATRIX_FILE = Path(__file__).resolve().parent / "matrix.json"


@dataclass(frozen=True)
class ProfessionRule:
    label: str
    allow: frozenset[str]
    deny: frozenset[str]

    def allows(self, type_code: str | None) -> bool:
        if any(token_matches(token, type_code) for token in self.deny):
            return False
        return any(token_matches(token, type_code) for token in self.allow)


@dataclass(frozen=True)
class AuthorizationMatrix:
    professions: dict[str, ProfessionRule]

    def allows(self, profession: str | None, type_code: str | None) -> bool:
        rule = self.professions.get(profession or "")
        return rule is not None and rule.allows(type_code)


def parse_matrix(document: Any, source: str = "matrix") -> AuthorizationMatrix:
    """Refuse a malformed table loudly at start-up rather than deny or allow by accident."""
    if not isinstance(document, dict) or not isinstance(document.get("professions"), dict):
        raise VaultError(f"{source}: expected an object with a 'professions' object")
    professions: dict[str, ProfessionRule] = {}
    for code, rule in document["professions"].items():
        if not isinstance(rule, dict):
            raise VaultError(f"{source}: profession {code!r} must be an object")
        unknown = set(rule) - {"label", "allow", "deny"}
        if unknown:
            raise VaultError(f"{source}: profession {code!r} has unknown keys {sorted(unknown)}")
        professions[str(code)] = ProfessionRule(
            label=str(rule.get("label", "")),
            allow=_tokens(rule.get("allow", []), f"{source}: {code}.allow"),
            deny=_tokens(rule.get("deny", []), f"{source}: {code}.deny"),
        )
    return AuthorizationMatrix(professions)


def _tokens(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise VaultError(f"{where} must be a list of document type codes")
    return frozenset(value)


def load_matrix(path: Path | None = None) -> AuthorizationMatrix:
    path = path or DEFAULT_MATRIX_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise VaultError(f"Cannot read the authorization matrix {path}: {error}") from None
    return parse_matrix(document, str(path))


@cache
def default_matrix() -> AuthorizationMatrix:
    return load_matrix(DEFAULT_MATRIX_FILE)
