"""What returns a document's row or content without a decision stays inside the documents
domain (issue 13): everything else reaches documents through DocumentService, which asks the
access decision first."""

from __future__ import annotations

import ast
from pathlib import Path

VAULT = Path(__file__).resolve().parents[2] / "vault"
UNCHECKED = frozenset({"get_unchecked", "_decrypt_version"})


def _uses_outside_documents() -> dict[str, set[str]]:
    uses: dict[str, set[str]] = {}
    for path in VAULT.rglob("*.py"):
        relative = path.relative_to(VAULT).as_posix()
        if relative.startswith("documents/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = (
                node.attr
                if isinstance(node, ast.Attribute)
                else node.id
                if isinstance(node, ast.Name)
                else None
            )
            if name in UNCHECKED:
                uses.setdefault(relative, set()).add(name)
    return uses


def test_unchecked_document_helpers_are_used_inside_the_documents_domain_only():
    assert _uses_outside_documents() == {}


def test_the_helpers_checked_for_still_exist():
    source = "\n".join(
        path.read_text(encoding="utf-8") for path in (VAULT / "documents").rglob("*.py")
    )
    for name in UNCHECKED:
        assert f"def {name}(" in source, name
