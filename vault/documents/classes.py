"""A document's class (``DocumentReference.category``) derived from its type, with the ANS
correspondence between document types and classes (ASS_X04, kept as data in
``type_class.json`` with its source).

IHE MHD allows ``category`` 0..* and the French DMP profiles' own examples send none; the
vault indexes and filters by class (searches, delegations by category), so a document
without one gets the class the ANS table gives its type, and the sender is told.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Correspondence:
    class_system: str
    type_to_class: dict[str, dict[str, str]]
    version: str

    def class_of(self, type_concept: Any) -> tuple[str, str, str] | None:
        """(type system, type code, class code) for the first coding of the type that the
        table knows; None when none is known."""
        if not isinstance(type_concept, dict):
            return None
        for coding in type_concept.get("coding") or []:
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            if not isinstance(system, str) or not isinstance(code, str):
                continue
            found = self.type_to_class.get(system, {}).get(code)
            if found is not None:
                return system, code, found
        return None


@cache
def correspondence() -> Correspondence:
    raw = resources.files("vault.documents").joinpath("type_class.json").read_text("utf-8")
    document = json.loads(raw)
    return Correspondence(
        class_system=document["class_system"],
        type_to_class=document["type_to_class"],
        version=document["_source"]["version"],
    )
