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


# The SMART context each role's tokens may use. Patients and the caregivers acting for them
# read and write a patient's record ("patient/"); professionals act as themselves ("user/");
# software and operators act as a system with no user at the keyboard ("system/"). A scope
# in any other context is dropped from the token, never widened into one that fits.
ROLE_CONTEXTS: dict[str, frozenset[str]] = {
    "patient": frozenset({"patient"}),
    "caregiver": frozenset({"patient"}),
    "professional": frozenset({"user"}),
    "software": frozenset({"system"}),
    "operator": frozenset({"system"}),
}


def scopes_for_role(role: str, scopes: tuple[Scope, ...]) -> tuple[Scope, ...]:
    allowed = ROLE_CONTEXTS.get(role, frozenset())
    return tuple(scope for scope in scopes if scope.context in allowed)


def format_scope(scope: Scope) -> str:
    letters = "".join(letter for letter in _ORDER if letter in scope.permissions)
    return f"{scope.context}/{scope.resource}.{letters}"


def grant(requested: tuple[Scope, ...], registered: tuple[Scope, ...]) -> tuple[Scope, ...]:
    """The part of each requested scope that the registered ones cover, never more: a request
    for ``system/DocumentReference.cruds`` by a client registered for
    ``system/DocumentReference.cr`` is granted ``system/DocumentReference.cr``."""
    granted: list[Scope] = []
    for wanted in requested:
        for held in registered:
            if held.context != wanted.context:
                continue
            if held.resource in ("*", wanted.resource):
                resource = wanted.resource
            elif wanted.resource == "*":
                resource = held.resource
            else:
                continue
            letters = wanted.permissions & held.permissions
            scope = Scope(context=wanted.context, resource=resource, permissions=letters)
            if letters and scope not in granted:
                granted.append(scope)
    return tuple(granted)
