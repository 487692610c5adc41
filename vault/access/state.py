"""A patient's access policy as the decision function sees it: an immutable snapshot of the
relationships in force, taken once per request. Pure data; loading is in repository.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

# The document visibility codes of the French shared record (TRE_A07).
VISIBILITY_SYSTEM = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/"
    "TRE-A07-StatusVisibiliteDocument"
)
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
MASKED = "MASQUE_PS"
INVISIBLE_REPRESENTATIVES = "INVISIBLE_REPRESENTANTS_LEGAUX"
VISIBILITY_LABELS = frozenset({INVISIBLE_PATIENT, MASKED, INVISIBLE_REPRESENTATIVES})

ALL_CATEGORIES = "*"
CAREGIVER_SYSTEM = "urn:vault:caregiver"
# The issuer of entries that named a caregiver account before entries named their issuer
# (the 2026-12 migration): no token carries it, so such an entry matches nobody until the
# patient grants it again (docs/access.md, "Who an entry names").
UNBOUND_ISSUER = "urn:vault:unbound"
# Grantees named by INS are stored by a keyed blind index, shown under this system.
PATIENT_INDEX_SYSTEM = "urn:vault:patient-index"


class EntryKind(StrEnum):
    TREATING_DOCTOR = "treating-doctor"
    CARE_TEAM = "care-team"
    POINT_OF_CARE = "point-of-care"
    BLOCK = "block"
    DELEGATION = "delegation"
    REPRESENTATIVE = "legal-representative"
    EMERGENCY = "emergency"
    EMERGENCY_OPT_OUT = "emergency-opt-out"


class DelegationScope(StrEnum):
    READ = "read"
    READ_UPLOAD = "read-upload"


class EmergencyMode(StrEnum):
    BREAK_GLASS = "break-glass"
    SAMU = "samu-regulation"


class ProtectionMeasure(StrEnum):
    """The legal protection measures under which an adult has a representative for the
    person (Code civil art. 425 ff.): those that give a power of representation, not mere
    assistance (a curatelle assists; its curateur is invited as a caregiver instead)."""

    TUTELLE = "tutelle"
    HABILITATION_FAMILIALE = "habilitation-familiale"
    MANDAT_PROTECTION_FUTURE = "mandat-protection-future"


# A representation's ``scope``: the ground it rests on, "minor" or the measure's type.
MINOR = "minor"


@dataclass(frozen=True)
class RepresentationGrounds:
    """What registering a legal representative rests on, as the service established it:
    whether the record's birth date makes the patient a minor today, the protection
    measure the request names (its reference is kept, sealed, with the entry), and whether
    the person named is the one asking."""

    minor: bool
    measure: ProtectionMeasure | None = None
    names_requester: bool = False


class Verb(StrEnum):
    ADD = "add"
    END = "end"
    READ = "read"


@dataclass(frozen=True)
class Entry:
    id: str
    kind: EntryKind
    subject: str | None
    starts_at: datetime
    expires_at: datetime | None = None
    scope: str | None = None
    categories: frozenset[str] = frozenset()
    # Who vouches for ``subject``: the issuer whose tokens it is the subject of (caregiver
    # accounts), or None for identifiers of a national namespace (IDNPS, INS) that only the
    # issuers trusted for that namespace can vouch for.
    issuer: str | None = None

    def names(self, subject: str, issuer: str | None) -> bool:
        """The (issuer, subject) pair matches: the same ``sub`` vouched for by another
        issuer is another person."""
        return self.subject == subject and self.issuer == issuer

    def in_force(self, at: datetime) -> bool:
        return self.starts_at <= at and (self.expires_at is None or at < self.expires_at)

    @property
    def can_upload(self) -> bool:
        return self.scope == DelegationScope.READ_UPLOAD

    def covers_category(self, category: str | None) -> bool:
        return any(token_matches(token, category) for token in self.categories)


@dataclass(frozen=True)
class PatientPolicy:
    """The entries not ended, as they stood at ``at``; expiry is judged against ``at``.
    ``closed``: the patient closed the record (or it was deleted): nobody reads it any more
    (docs/lifecycle.md)."""

    patient_id: str
    at: datetime
    version: int = 0
    entries: tuple[Entry, ...] = field(default=())
    closed: bool = False

    def in_force(
        self, kind: EntryKind, subject: str | None = None, issuer: str | None = None
    ) -> tuple[Entry, ...]:
        """Entries of this kind in force; given a subject, those naming it as vouched for
        by ``issuer`` (None: a national identifier, IDNPS or INS)."""
        return tuple(
            entry
            for entry in self.entries
            if entry.kind is kind
            and (subject is None or entry.names(subject, issuer))
            and entry.in_force(self.at)
        )

    def first(
        self, kind: EntryKind, subject: str | None = None, issuer: str | None = None
    ) -> Entry | None:
        found = self.in_force(kind, subject, issuer)
        return found[0] if found else None

    def blocks(self, professional: str) -> bool:
        return self.first(EntryKind.BLOCK, professional) is not None

    @property
    def emergency_refused(self) -> bool:
        return self.first(EntryKind.EMERGENCY_OPT_OUT) is not None

    @property
    def treating_doctor(self) -> str | None:
        entry = self.first(EntryKind.TREATING_DOCTOR)
        return entry.subject if entry else None


@dataclass(frozen=True)
class PolicyChange:
    """What a policy request touches, for the rules that depend on it: which kind of
    entry, whether it adds, ends or reads one, which entry, and an emergency's mode."""

    kind: EntryKind
    verb: Verb
    entry_id: str | None = None
    mode: EmergencyMode | None = None
    # Registering a legal representative: what it rests on.
    grounds: RepresentationGrounds | None = None
    # Accepting an invitation: the service found its code valid (unused, unexpired).
    invited: bool = False


@dataclass(frozen=True)
class MetadataChange:
    """What a document metadata update changes."""

    status: bool = False
    labels_added: frozenset[str] = frozenset()
    labels_removed: frozenset[str] = frozenset()

    @classmethod
    def between(
        cls,
        status_before: str | None,
        status_after: str | None,
        labels_before: frozenset[str],
        labels_after: frozenset[str],
    ) -> MetadataChange:
        return cls(
            status=status_before != status_after,
            labels_added=labels_after - labels_before,
            labels_removed=labels_before - labels_after,
        )

    @property
    def other_labels(self) -> frozenset[str]:
        return (self.labels_added | self.labels_removed) - VISIBILITY_LABELS


def token_matches(token: str, value: str | None) -> bool:
    """A configured token is ``*``, ``system|code`` or a bare ``code`` (any system);
    values are stored as ``system|code``."""
    if token == ALL_CATEGORIES:
        return True
    if value is None:
        return False
    if "|" in token:
        return token == value
    return value.rpartition("|")[2] == token
