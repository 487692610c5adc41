"""What a reader may see of a record, as a predicate over a document's facts.

``policy.readable`` builds one from the same rules as ``decide``, for one reader, one
patient and the patient's policy as it stands; the documents repository turns it into a
``WHERE`` clause, so that a search reads only what it returns; ``evaluate`` answers it in
Python, which is how the tests hold the two to the decision function. Pure data: no SQL
here, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from vault.access.state import token_matches

Field = Literal["type_code", "category_code"]


@dataclass(frozen=True)
class Authored:
    """The document's author is (kind, id)."""

    kind: str
    id: str


@dataclass(frozen=True)
class Labelled:
    """The document carries this security label."""

    label: str


@dataclass(frozen=True)
class Matches:
    """Some token matches the field's code, as ``token_matches`` has it (``*`` matches
    every value, absent ones too)."""

    field: Field
    tokens: frozenset[str]


@dataclass(frozen=True)
class Not:
    term: Filter


@dataclass(frozen=True)
class AllOf:
    terms: tuple[Filter, ...]


@dataclass(frozen=True)
class AnyOf:
    terms: tuple[Filter, ...]


Filter = Authored | Labelled | Matches | Not | AllOf | AnyOf

EVERYTHING: Filter = AllOf(())
NOTHING: Filter = AnyOf(())


def all_of(*terms: Filter) -> Filter:
    kept = tuple(term for term in terms if term != EVERYTHING)
    if NOTHING in kept:
        return NOTHING
    return kept[0] if len(kept) == 1 else AllOf(kept)


def any_of(*terms: Filter) -> Filter:
    kept = tuple(term for term in terms if term != NOTHING)
    if EVERYTHING in kept:
        return EVERYTHING
    return kept[0] if len(kept) == 1 else AnyOf(kept)


def not_(term: Filter) -> Filter:
    if term == EVERYTHING:
        return NOTHING
    if term == NOTHING:
        return EVERYTHING
    return term.term if isinstance(term, Not) else Not(term)


def matches(field: Field, tokens: frozenset[str]) -> Filter:
    if "*" in tokens:
        return EVERYTHING
    return Matches(field, tokens) if tokens else NOTHING


class Facts(Protocol):
    """What ``evaluate`` reads of a document: ``DocumentFacts`` has all of it."""

    @property
    def author_kind(self) -> str: ...
    @property
    def author_id(self) -> str: ...
    @property
    def security_labels(self) -> frozenset[str]: ...
    @property
    def type_code(self) -> str | None: ...
    @property
    def category_code(self) -> str | None: ...


def evaluate(term: Filter, facts: Facts) -> bool:
    if isinstance(term, Authored):
        return (facts.author_kind, facts.author_id) == (term.kind, term.id)
    if isinstance(term, Labelled):
        return term.label in facts.security_labels
    if isinstance(term, Matches):
        value = getattr(facts, term.field)
        return any(token_matches(token, value) for token in term.tokens)
    if isinstance(term, Not):
        return not evaluate(term.term, facts)
    if isinstance(term, AllOf):
        return all(evaluate(part, facts) for part in term.terms)
    return any(evaluate(part, facts) for part in term.terms)
