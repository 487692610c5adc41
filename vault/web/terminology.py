"""French labels of document types, categories and professions (terminology.json, from
the ANS value sets it names as its sources)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Terminology:
    category_system: str
    categories: dict[str, str]
    type_system: str
    types: dict[str, str]
    patient_types: tuple[str, ...]
    patient_category: str
    professions: dict[str, str]

    def category(self, token: str | None) -> str | None:
        """The label of a stored ``system|code`` (or bare code)."""
        if not token:
            return None
        return self.categories.get(token.rpartition("|")[2])

    def type(self, token: str | None) -> str | None:
        if not token:
            return None
        return self.types.get(token.rpartition("|")[2])

    def profession(self, code: str | None) -> str | None:
        return self.professions.get(code or "")


@lru_cache
def terminology() -> Terminology:
    raw = json.loads(resources.files("vault.web").joinpath("terminology.json").read_text("utf-8"))
    return Terminology(
        category_system=raw["categories"]["system"],
        categories=dict(raw["categories"]["concepts"]),
        type_system=raw["types"]["system"],
        types=dict(raw["types"]["concepts"]),
        patient_types=tuple(raw["patient_types"]["codes"]),
        patient_category=raw["patient_types"]["category"],
        professions=dict(raw["professions"]["concepts"]),
    )
