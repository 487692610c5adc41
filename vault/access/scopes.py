"""SMART App Launch v2 scopes: ``context/resource.permissions`` (v1 ``read``/``write`` too)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([cruds]+|read|write|\*)$")
_ORDER = "cruds"


class Interaction(StrEnum):
    CREATE = "c"
    READ = "r"
    UPDATE = "u"
    DELETE = "d"
    SEARCH = "s"


@dataclass(frozen=True)
class Scope:
    context: str
    resource: str
    permissions: frozenset[str]

    def allows(self, resource: str, interaction: Interaction) -> bool:
        return self.resource in ("*", resource) and interaction.value in self.permissions


def parse_scope(text: str) -> Scope | None:
    """Parse one scope; None for non-resource scopes (``openid``, ``launch`` ...)."""
    match = _SCOPE.fullmatch(text)
    if match is None:
        return None
    context, resource, perms = match.groups()
    if perms == "*":
        letters = set(_ORDER)
    elif perms == "read":
        letters = {"r", "s"}
    elif perms == "write":
        letters = {"c", "u", "d"}
    else:
        # v2 requires the letters in c-r-u-d-s order, each at most once.
        if "".join(sorted(perms, key=_ORDER.index)) != perms or len(set(perms)) != len(perms):
            return None
        letters = set(perms)
    return Scope(context=context, resource=resource, permissions=frozenset(letters))


def parse_scopes(text: str) -> tuple[Scope, ...]:
    parsed = (parse_scope(item) for item in text.split())
    return tuple(scope for scope in parsed if scope is not None)


def scopes_allow(scopes: tuple[Scope, ...], resource: str, interaction: Interaction) -> bool:
    return any(scope.allows(resource, interaction) for scope in scopes)


DEFAULT_SCOPES = {
    "patient": "patient/*.cruds",
    "professional": "user/*.cruds",
    "caregiver": "patient/*.cruds",
    "software": "system/*.cruds",
    "operator": "system/AuditEvent.rs",
}
