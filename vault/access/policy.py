"""The decision function: pure, over (actor, permission, patient, document, the patient's
policy snapshot, the change asked for, the authorization matrix).

Deny by default: every rule below grants something specific; anything not granted is
refused. The same function answers single reads and filters search results, so what a
caller may not see is indistinguishable from what does not exist. The rules and the
reasons behind them are in docs/access.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from vault.access.filters import (
    EVERYTHING,
    NOTHING,
    Authored,
    Filter,
    Labelled,
    all_of,
    any_of,
    matches,
    not_,
)
from vault.access.matrix import AuthorizationMatrix, default_matrix
from vault.access.permissions import SCOPE_NEEDED, Permission
from vault.access.state import (
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTATIVES,
    MASKED,
    VISIBILITY_LABELS,
    EmergencyMode,
    Entry,
    EntryKind,
    MetadataChange,
    PatientPolicy,
    PolicyChange,
    Verb,
)
from vault.identity.principal import Principal, Role
from vault.identity.scopes import scopes_allow

# The audit role of someone acting under a legal representation, on behalf of the patient.
REPRESENTATIVE_ROLE = "legal-representative"

__all__ = [
    "INVISIBLE_PATIENT",
    "INVISIBLE_REPRESENTATIVES",
    "LIFECYCLE",
    "MASKED",
    "Actor",
    "Basis",
    "Decision",
    "DocumentFacts",
    "Purpose",
    "author_of",
    "decide",
    "is_closed",
    "known_to_patient",
    "readable",
]

DOCTOR = "10"
READS = frozenset({Permission.DOCUMENT_READ, Permission.DOCUMENT_CONTENT})
# Whole-record permissions a patient (or whoever manages the record for them) holds.
RECORD_WIDE = frozenset(
    {
        Permission.PATIENT_READ,
        Permission.DOCUMENT_CREATE,
        Permission.AUDIT_READ,
        Permission.POLICY_READ,
        Permission.POLICY_MANAGE,
        Permission.DELEGATION_GRANT,
        Permission.DELEGATION_REVOKE,
        Permission.NOTIFICATIONS_READ,
        Permission.NOTIFICATIONS_MANAGE,
        Permission.RECORD_EXPORT,
        Permission.RECORD_STATUS,
        Permission.RECORD_CLOSE,
        Permission.RECORD_DELETE,
        Permission.RECORD_REOPEN,
    }
)
# What may still be asked of a closed record: where it stands, its deletion, its reopening.
# Everything else is refused, to everyone (docs/lifecycle.md).
LIFECYCLE = frozenset(
    {
        Permission.RECORD_STATUS,
        Permission.RECORD_CLOSE,
        Permission.RECORD_DELETE,
        Permission.RECORD_REOPEN,
    }
)
# Writes into a closed record are refused saying so: feeding a record is open, so its
# senders must learn why their push was not taken (answered 409).
FEEDING = frozenset({Permission.DOCUMENT_CREATE, Permission.PATIENT_CREATE})


class Purpose(StrEnum):
    """v3 PurposeOfUse codes, as the audit log records them."""

    TREATMENT = "TREAT"
    PATIENT_REQUEST = "PATRQT"
    EMERGENCY = "ETREAT"
    OPERATIONS = "HOPERAT"
    # A caregiver the patient delegated to (their support network).
    SUPPORT_NETWORK = "SUPNWK"
    # A legal representative acting for a minor.
    POWER_OF_ATTORNEY = "PWATRNY"


class Basis(StrEnum):
    """Why access was granted: recorded in the audit entry's ``basis`` detail."""

    SELF = "self"
    AUTHOR = "author"
    FEEDING = "feeding"
    TREATING_DOCTOR = "treating-doctor"
    CARE_TEAM = "care-team"
    POINT_OF_CARE = "point-of-care"
    EMERGENCY = "emergency"
    REPRESENTATIVE = "legal-representative"
    DELEGATION = "delegation"
    OPERATIONS = "operations"


class PolicySource(Protocol):
    """Where an actor's request finds a patient's policy snapshot (loaded once)."""

    def get(self, patient_id: str) -> PatientPolicy: ...


@dataclass(frozen=True)
class Actor:
    """A principal plus what the vault knows about them: their own record, if any, the key
    that delegations and representations name them by (with the issuer that vouches for
    it: None for an INS, a national namespace), and where this request finds patients'
    policies."""

    principal: Principal
    own_patient_id: str | None = None
    proxy_key: str | None = None
    policies: PolicySource | None = field(default=None, compare=False, repr=False)
    proxy_issuer: str | None = None
    # The actor's own record is closed: read with the record's id, since a patient's
    # requests about their own record are decided without loading its policy.
    own_record_closed: bool = False


@dataclass(frozen=True)
class DocumentFacts:
    patient_id: str
    author_kind: str
    author_id: str
    security_labels: frozenset[str]
    status: str
    type_code: str | None = None
    category_code: str | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    purpose: Purpose
    basis: Basis | None = None
    # Audit detail the decision adds (the delegation used, the emergency flag...).
    detail: tuple[tuple[str, str], ...] = ()
    # Refused for what the request asks, not for who asks: the caller may make such a
    # request, so saying why hides nothing (answered 422, not 404).
    unprocessable: bool = False
    # Refused because the patient closed the record: a push says so (answered 409).
    closed: bool = False

    def __bool__(self) -> bool:
        return self.allowed


def _deny(reason: str, purpose: Purpose = Purpose.TREATMENT) -> Decision:
    return Decision(False, reason, purpose)


def _allow(
    reason: str, purpose: Purpose, basis: Basis, detail: tuple[tuple[str, str], ...] = ()
) -> Decision:
    return Decision(True, reason, purpose, basis, detail)


def _unprocessable(reason: str, purpose: Purpose) -> Decision:
    return Decision(False, reason, purpose, unprocessable=True)


def _representation_refused(change: PolicyChange | None, purpose: Purpose) -> Decision | None:
    """Registering a legal representative rests on the patient being a minor (from the
    record's birth date) or on a legal protection measure the request names; and nobody
    registers themselves. None when the registration may go ahead."""
    if change is None or change.kind is not EntryKind.REPRESENTATIVE or change.verb is not Verb.ADD:
        return None
    grounds = change.grounds
    if grounds is None:
        return _deny("no grounds established for a legal representation", purpose)
    if grounds.names_requester:
        return _unprocessable("no one registers themselves as a legal representative", purpose)
    if not grounds.minor and grounds.measure is None:
        return _unprocessable(
            "an adult has a legal representative only under a protection measure", purpose
        )
    return None


@dataclass(frozen=True)
class _Request:
    actor: Actor
    permission: Permission
    patient_id: str
    document: DocumentFacts | None
    policy: PatientPolicy
    change: MetadataChange | PolicyChange | None
    matrix: AuthorizationMatrix

    @property
    def labels(self) -> frozenset[str]:
        return self.document.security_labels if self.document else frozenset()

    @property
    def is_author(self) -> bool:
        return self.document is not None and _is_author(self.actor, self.document)

    @property
    def policy_change(self) -> PolicyChange | None:
        return self.change if isinstance(self.change, PolicyChange) else None

    @property
    def metadata_change(self) -> MetadataChange | None:
        return self.change if isinstance(self.change, MetadataChange) else None


def decide(
    actor: Actor,
    permission: Permission,
    patient_id: str,
    document: DocumentFacts | None = None,
    *,
    policy: PatientPolicy | None = None,
    change: MetadataChange | PolicyChange | None = None,
    matrix: AuthorizationMatrix | None = None,
) -> Decision:
    principal = actor.principal
    resource, interaction = SCOPE_NEEDED[permission]
    if not scopes_allow(principal.scopes, resource, interaction):
        return _deny("scope")
    if document is not None and document.patient_id != patient_id:
        return _deny("document belongs to another patient")
    if policy is not None and policy.patient_id != patient_id:
        return _deny("policy of another patient")
    request = _Request(
        actor,
        permission,
        patient_id,
        document,
        policy or _no_policy(patient_id),
        change,
        matrix or default_matrix(),
    )
    decided = _by_role(request)
    if permission not in LIFECYCLE and is_closed(actor, patient_id, request.policy):
        # Nobody reads a closed record. Those who could write into it learn why they may
        # not; to anyone else it stays what it was, something they may not see.
        return _closed_refusal(decided, permission)
    return decided


def _by_role(request: _Request) -> Decision:
    actor = request.actor
    role = actor.principal.role
    if role is Role.PATIENT and actor.own_patient_id == request.patient_id:
        return _decide_self(request)
    if role in (Role.PATIENT, Role.CAREGIVER):
        return _decide_proxy(request)
    if role in (Role.PROFESSIONAL, Role.SOFTWARE):
        return _decide_professional(request)
    if role is Role.OPERATOR:
        return _decide_operator(request)
    return _deny("no rule grants this role access")


def is_closed(actor: Actor, patient_id: str, policy: PatientPolicy | None) -> bool:
    """The record is closed (or deleted), as the policy snapshot says, or, for a patient's
    own record (decided without its policy), as their actor says."""
    own = actor.principal.role is Role.PATIENT and actor.own_patient_id == patient_id
    return (policy is not None and policy.closed) or (own and actor.own_record_closed)


def _closed_refusal(decided: Decision, permission: Permission) -> Decision:
    if not decided.allowed:
        return decided
    closed = permission in FEEDING
    return Decision(False, "the patient's space is closed", decided.purpose, closed=closed)


def needs_policy(actor: Actor, patient_id: str) -> bool:
    """Whether ``decide`` reads the patient's policy for this actor: a patient acting on
    their own record is decided without it (``_decide_self``), so a request for one's own
    record need not load it."""
    return not (actor.principal.role is Role.PATIENT and actor.own_patient_id == patient_id)


def _no_policy(patient_id: str) -> PatientPolicy:
    # No entries, so the moment expiries would be judged against never matters.
    return PatientPolicy(patient_id, datetime.min.replace(tzinfo=UTC))


# -- the patient ------------------------------------------------------------------------


def known_to_patient(document: DocumentFacts) -> Decision:
    """Whether the patient may learn that this document exists at all: in their record,
    their access history or a notification. A result a professional marked "not yet"
    (INVISIBLE_PATIENT) does not exist for them until its author lifts the mark; every
    trace of it (its reads, its SubmissionSet, its content, its versions) is held back."""
    purpose = Purpose.PATIENT_REQUEST
    if INVISIBLE_PATIENT in document.security_labels:
        return _deny("invisible to the patient until announced", purpose)
    return _allow("the patient's own record", purpose, Basis.SELF)


def _decide_self(request: _Request) -> Decision:
    purpose = Purpose.PATIENT_REQUEST

    def allow(reason: str) -> Decision:
        return _allow(reason, purpose, Basis.SELF)

    permission = request.permission
    if permission is Permission.DOCUMENT_CREATE:
        # The patient masks from professionals and keeps from representatives; only a
        # professional author hides a result from the patient until it is announced.
        refused = _labels_refused(request, PATIENT_SETS, "the patient", purpose)
        if refused is not None:
            return refused
    if permission in RECORD_WIDE or permission is Permission.PATIENT_CREATE:
        return _record_wide(request, allow, purpose)
    if permission is Permission.DOCUMENT_SEARCH and request.document is None:
        return allow("own record")
    if request.document is None:
        return _deny("no document", purpose)
    if INVISIBLE_PATIENT in request.labels and not request.is_author:
        return _deny("invisible to the patient until announced", purpose)
    if permission in READS or permission is Permission.DOCUMENT_SEARCH:
        return allow("own record")
    if permission is Permission.DOCUMENT_UPDATE:
        may = _change_allowed(
            request,
            add=frozenset({MASKED, INVISIBLE_REPRESENTATIVES}),
            remove=frozenset({MASKED, INVISIBLE_REPRESENTATIVES}),
        )
        return allow("own record") if may else _deny("not the patient's to change", purpose)
    if permission is Permission.DOCUMENT_DELETE and request.is_author:
        return allow("own upload")
    return _deny("patients delete only the documents they uploaded", purpose)


def _record_wide(
    request: _Request, allow: _Allow, purpose: Purpose, *, representative: bool = False
) -> Decision:
    change = request.policy_change
    if request.permission is Permission.PATIENT_CREATE:
        # A representative does not open records: the record comes first, then the link.
        return _deny("not one's own record", purpose) if representative else allow("own record")
    if (
        request.permission is Permission.POLICY_MANAGE
        and change is not None
        and change.kind in (EntryKind.EMERGENCY, EntryKind.POINT_OF_CARE)
        and change.verb is not Verb.END
    ):
        return _deny("declared by professionals, not by the patient", purpose)
    if request.permission is Permission.POLICY_MANAGE:
        refused = _representation_refused(change, purpose)
        if refused is not None:
            return refused
    return allow("own record")


# The visibility labels each may set on a document they upload (a professional author: all).
PATIENT_SETS = frozenset({MASKED, INVISIBLE_REPRESENTATIVES})
REPRESENTATIVE_SETS = frozenset({MASKED})


def _labels_refused(
    request: _Request, may_set: frozenset[str], who: str, purpose: Purpose
) -> Decision | None:
    """An upload carrying visibility labels its uploader may not set: refused, saying so
    (the uploader may upload, so nothing is hidden by the reason)."""
    forbidden = (request.labels & VISIBILITY_LABELS) - may_set
    if not forbidden:
        return None
    return _unprocessable(
        f"{who} may not set {', '.join(sorted(forbidden))}: only a professional author hides "
        "a document from the patient, and only the patient masks one from professionals "
        "or keeps one from legal representatives",
        purpose,
    )


class _Allow(Protocol):
    def __call__(self, reason: str) -> Decision: ...


def _change_allowed(request: _Request, *, add: frozenset[str], remove: frozenset[str]) -> bool:
    """A metadata change: status and ordinary labels are the author's; each visibility
    label may be added or removed only by those the rule names. No change described means
    an unrestricted one (a replacement superseding the document): the author's alone."""
    change = request.metadata_change
    unrestricted = change is None or change.status or bool(change.other_labels)
    if unrestricted and not request.is_author:
        return False
    if change is None:
        return True
    added = change.labels_added & VISIBILITY_LABELS
    removed = change.labels_removed & VISIBILITY_LABELS
    return added <= add and removed <= remove


# -- legal representatives and caregivers ----------------------------------------------


def _decide_proxy(request: _Request) -> Decision:
    key = request.actor.proxy_key
    if key is None:
        return _deny("not the patient's own record", Purpose.PATIENT_REQUEST)
    if request.permission is Permission.INVITATION_ACCEPT:
        return _accept_invitation(request)
    issuer = request.actor.proxy_issuer
    representation = request.policy.first(EntryKind.REPRESENTATIVE, key, issuer)
    if representation is not None:
        return _decide_representative(request, representation)
    delegations = request.policy.in_force(EntryKind.DELEGATION, key, issuer)
    if delegations and request.actor.principal.role is Role.CAREGIVER:
        return _decide_delegate(request, delegations)
    return _deny("no delegation or representation in force", Purpose.PATIENT_REQUEST)


def _accept_invitation(request: _Request) -> Decision:
    """A caregiver signed in with their own identity takes up the delegation the patient
    offered by a one-time code; it will name that identity (issuer and subject). The code
    is the patient's grant: without a valid one there is nothing to accept."""
    purpose = Purpose.SUPPORT_NETWORK
    change = request.policy_change
    if request.actor.principal.role is not Role.CAREGIVER:
        return _deny("invitations are accepted by caregivers", purpose)
    if change is None or change.kind is not EntryKind.DELEGATION or not change.invited:
        return _deny("no valid invitation", purpose)
    return _allow("invitation accepted", purpose, Basis.DELEGATION)


def _decide_representative(request: _Request, representation: Entry) -> Decision:
    """As the patient would, less what is hidden from representatives. Refusals too name
    the representation, so the log records them in the representative's own name."""
    decided = _as_representative(request, representation)
    if decided.allowed or decided.detail:
        return decided
    return replace(decided, detail=(("representation", representation.id),))


def _as_representative(request: _Request, representation: Entry) -> Decision:
    purpose = Purpose.POWER_OF_ATTORNEY
    detail = (("representation", representation.id),)

    def allow(reason: str) -> Decision:
        return _allow(reason, purpose, Basis.REPRESENTATIVE, detail)

    permission = request.permission
    if permission is Permission.DOCUMENT_CREATE:
        refused = _labels_refused(request, REPRESENTATIVE_SETS, "a legal representative", purpose)
        if refused is not None:
            return refused
    if permission in RECORD_WIDE or permission is Permission.PATIENT_CREATE:
        return _record_wide(request, allow, purpose, representative=True)
    if permission is Permission.DOCUMENT_SEARCH and request.document is None:
        return allow("legal representative")
    if request.document is None:
        return _deny("no document", purpose)
    hidden = request.labels & {INVISIBLE_PATIENT, INVISIBLE_REPRESENTATIVES}
    if hidden and not request.is_author:
        return _deny("hidden from legal representatives", purpose)
    if permission in READS or permission is Permission.DOCUMENT_SEARCH:
        return allow("legal representative")
    if permission is Permission.DOCUMENT_UPDATE:
        may = _change_allowed(request, add=frozenset({MASKED}), remove=frozenset({MASKED}))
        return allow("legal representative") if may else _deny("not theirs to change", purpose)
    if permission is Permission.DOCUMENT_DELETE and request.is_author:
        return allow("own upload")
    return _deny("legal representatives delete only what they uploaded", purpose)


def _decide_delegate(request: _Request, delegations: tuple[Entry, ...]) -> Decision:
    purpose = Purpose.SUPPORT_NETWORK
    permission = request.permission
    document = request.document

    def allow(reason: str, delegation: Entry) -> Decision:
        return _allow(reason, purpose, Basis.DELEGATION, (("delegation", delegation.id),))

    uploaders = tuple(entry for entry in delegations if entry.can_upload)
    if permission in (Permission.PATIENT_READ, Permission.DOCUMENT_SEARCH) and document is None:
        return allow("delegation", delegations[0])
    if permission in (Permission.POLICY_READ, Permission.DELEGATION_REVOKE):
        # A caregiver sees and can give up their own delegation; nothing else of the policy.
        change = request.policy_change
        own = [entry for entry in delegations if change and entry.id == change.entry_id]
        if own:
            return allow("own delegation", own[0])
        return _deny("caregivers cannot change the policy or re-delegate", purpose)
    if permission is Permission.DOCUMENT_CREATE:
        covering = [
            entry
            for entry in uploaders
            if document is not None and entry.covers_category(document.category_code)
        ]
        if not covering:
            return _deny("the delegation does not cover uploading this document", purpose)
        refused = _labels_refused(request, frozenset(), "a caregiver", purpose)
        if refused is not None:
            return refused
        return allow("delegated upload", covering[0])
    if document is None:
        return _deny("not within a delegation's scope", purpose)
    if request.labels & VISIBILITY_LABELS and not request.is_author:
        return _deny("caregivers never see masked or hidden documents", purpose)
    if permission in READS or permission is Permission.DOCUMENT_SEARCH:
        if request.is_author:
            return allow("own upload", delegations[0])
        covering = [entry for entry in delegations if entry.covers_category(document.category_code)]
        if covering:
            return allow("delegated read", covering[0])
        return _deny("category outside the delegation", purpose)
    if permission in (Permission.DOCUMENT_UPDATE, Permission.DOCUMENT_DELETE):
        unchanged_visibility = permission is Permission.DOCUMENT_DELETE or _change_allowed(
            request, add=frozenset(), remove=frozenset()
        )
        if uploaders and request.is_author and unchanged_visibility:
            return allow("own upload", uploaders[0])
        return _deny("caregivers change only what they uploaded", purpose)
    return _deny("not within a delegation's scope", purpose)


# -- professionals and the software acting for them -------------------------------------


def _decide_professional(request: _Request) -> Decision:
    principal = request.actor.principal
    professional = principal.acting_professional
    permission = request.permission
    policy = request.policy
    if professional is None:
        return _deny("no acting professional")
    if policy.blocks(professional):
        return _deny("blocked by the patient")
    if permission in (Permission.DOCUMENT_CREATE, Permission.PATIENT_CREATE):
        # Feeding a record is open to every authenticated professional (CONTRACT.md).
        return _allow("feeding the record", Purpose.TREATMENT, Basis.FEEDING)
    if permission is Permission.CONSENT_DECLARE:
        if policy.emergency_refused:
            # The patient refused access they did not grant themselves: a professional's
            # word that they agreed is no more than that; the patient adds them to the
            # care team themselves (docs/access.md, "Consent at the point of care").
            return _deny("the patient refused access they do not grant themselves")
        return _allow("patient informed and agreed", Purpose.TREATMENT, Basis.POINT_OF_CARE)
    if permission is Permission.EMERGENCY_DECLARE:
        return _emergency_declaration(request)
    if permission is Permission.DOCUMENT_SEARCH and request.document is None:
        # The search itself is allowed; each result is decided on its own.
        return _allow("search, results filtered", Purpose.TREATMENT, Basis.FEEDING)
    if request.is_author:
        return _decide_author(request)
    relation = _care_relation(policy, professional)
    if relation is None:
        return _deny("no care relationship")
    basis, entry = relation
    purpose = Purpose.EMERGENCY if basis is Basis.EMERGENCY else Purpose.TREATMENT
    detail = _relation_detail(basis, entry)
    if permission is Permission.PATIENT_READ:
        return _allow("care relationship", purpose, basis, detail)
    document = request.document
    if document is None or not (permission in READS or permission is Permission.DOCUMENT_SEARCH):
        return _deny("not permitted to professionals", purpose)
    if MASKED in document.security_labels and basis is not Basis.TREATING_DOCTOR:
        return _deny("masked by the patient", purpose)
    if not request.matrix.allows(principal.profession, document.type_code):
        return _deny("document type outside the profession's matrix", purpose)
    return _allow("care relationship", purpose, basis, detail)


def _decide_author(request: _Request) -> Decision:
    permission = request.permission
    if permission is Permission.DOCUMENT_UPDATE and not _change_allowed(
        request,
        add=frozenset({MASKED, INVISIBLE_PATIENT, INVISIBLE_REPRESENTATIVES}),
        remove=frozenset({INVISIBLE_PATIENT, INVISIBLE_REPRESENTATIVES}),
    ):
        return _deny("only the patient unmasks a document")
    if permission in READS or permission in (
        Permission.DOCUMENT_SEARCH,
        Permission.DOCUMENT_UPDATE,
        Permission.DOCUMENT_DELETE,
    ):
        return _allow("author", Purpose.TREATMENT, Basis.AUTHOR)
    return _deny("no rule grants this")


def _emergency_declaration(request: _Request) -> Decision:
    change = request.policy_change
    if request.policy.emergency_refused:
        return _deny("the patient refused emergency access", Purpose.EMERGENCY)
    samu = change is not None and change.mode is EmergencyMode.SAMU
    if samu and request.actor.principal.profession != DOCTOR:
        return _deny("SAMU regulation is for doctors", Purpose.EMERGENCY)
    return _allow("emergency declared", Purpose.EMERGENCY, Basis.EMERGENCY)


def _care_relation(policy: PatientPolicy, professional: str) -> tuple[Basis, Entry] | None:
    relations = [
        (EntryKind.TREATING_DOCTOR, Basis.TREATING_DOCTOR),
        (EntryKind.CARE_TEAM, Basis.CARE_TEAM),
    ]
    if not policy.emergency_refused:
        # Declared by the professional, not granted by the patient: a refusal of access
        # the patient did not grant themselves covers it, and ends it while in force.
        relations.append((EntryKind.POINT_OF_CARE, Basis.POINT_OF_CARE))
    for kind, basis in relations:
        entry = policy.first(kind, professional)
        if entry is not None:
            return basis, entry
    emergency = policy.first(EntryKind.EMERGENCY, professional)
    if emergency is not None and not policy.emergency_refused:
        return Basis.EMERGENCY, emergency
    return None


def _relation_detail(basis: Basis, entry: Entry) -> tuple[tuple[str, str], ...]:
    if basis is Basis.EMERGENCY:
        return (
            ("emergency", "true"),
            ("emergency_access", entry.id),
            ("emergency_mode", entry.scope or EmergencyMode.BREAK_GLASS.value),
        )
    if basis is Basis.POINT_OF_CARE:
        return (("point_of_care", entry.id),)
    return ()


# -- operators --------------------------------------------------------------------------


def _decide_operator(request: _Request) -> Decision:
    """Operators never read a record, its documents or its policy. The one thing they do
    on a record is register (or end) a legal representation once its authority is checked,
    never for themselves, and only on the grounds the rules admit: each such registration
    is announced to the patient and to the existing representatives."""
    change = request.policy_change
    purpose = Purpose.OPERATIONS
    if (
        request.permission is Permission.POLICY_MANAGE
        and change is not None
        and change.kind is EntryKind.REPRESENTATIVE
        and change.verb in (Verb.ADD, Verb.END)
    ):
        refused = _representation_refused(change, purpose)
        if refused is not None:
            return refused
        return _allow("representation registered", purpose, Basis.OPERATIONS)
    return _deny("operators never read records", purpose)


# -- authorship -------------------------------------------------------------------------


def author_of(actor: Actor) -> tuple[str, str]:
    """How a document or policy change this actor makes records who made it: patients by
    record id and everyone acting for a patient by their proxy key (never an INS, which
    must not sit in clear), professionals by IDNPS."""
    principal = actor.principal
    if principal.role is Role.PATIENT:
        if actor.own_patient_id is not None:
            return "patient", actor.own_patient_id
        return "proxy", actor.proxy_key or "unknown"
    if principal.role is Role.CAREGIVER:
        return "caregiver", principal.subject
    professional = principal.acting_professional
    if professional is not None:
        return "professional", professional
    return principal.role.value, principal.subject


def _is_author(actor: Actor, document: DocumentFacts) -> bool:
    return (document.author_kind, document.author_id) == author_of(actor)


# -- what a reader may see, as a filter ---------------------------------------------------


def readable(
    actor: Actor,
    patient_id: str,
    *,
    policy: PatientPolicy | None = None,
    matrix: AuthorizationMatrix | None = None,
) -> Filter:
    """The documents of ``patient_id`` that ``decide`` lets ``actor`` read
    (``Permission.DOCUMENT_READ``), as a filter over their facts: a search applies it in
    its query instead of deciding candidate by candidate. The rules are those above, read
    for a document whose facts are not yet known; a property test holds the two equal
    on random actors, policies and documents (tests/access/test_readable_filter.py).
    """
    principal = actor.principal
    resource, interaction = SCOPE_NEEDED[Permission.DOCUMENT_READ]
    if not scopes_allow(principal.scopes, resource, interaction):
        return NOTHING
    if policy is not None and policy.patient_id != patient_id:
        return NOTHING
    if is_closed(actor, patient_id, policy):
        return NOTHING
    policy = policy or _no_policy(patient_id)
    own = Authored(*author_of(actor))
    role = principal.role
    if role is Role.PATIENT and actor.own_patient_id == patient_id:
        return any_of(not_(Labelled(INVISIBLE_PATIENT)), own)
    if role in (Role.PATIENT, Role.CAREGIVER):
        return _readable_by_proxy(actor, policy, own)
    if role in (Role.PROFESSIONAL, Role.SOFTWARE):
        return _readable_by_professional(actor, policy, matrix or default_matrix(), own)
    return NOTHING


def _readable_by_proxy(actor: Actor, policy: PatientPolicy, own: Authored) -> Filter:
    key = actor.proxy_key
    if key is None:
        return NOTHING
    # The (issuer, subject) pair, as _decide_proxy reads it.
    issuer = actor.proxy_issuer
    if policy.first(EntryKind.REPRESENTATIVE, key, issuer) is not None:
        hidden = any_of(Labelled(INVISIBLE_PATIENT), Labelled(INVISIBLE_REPRESENTATIVES))
        return any_of(not_(hidden), own)
    delegations = policy.in_force(EntryKind.DELEGATION, key, issuer)
    if not delegations or actor.principal.role is not Role.CAREGIVER:
        return NOTHING
    visible = not_(any_of(*(Labelled(label) for label in sorted(VISIBILITY_LABELS))))
    covered = matches(
        "category_code", frozenset().union(*(entry.categories for entry in delegations))
    )
    return any_of(own, all_of(visible, covered))


def _readable_by_professional(
    actor: Actor, policy: PatientPolicy, matrix: AuthorizationMatrix, own: Authored
) -> Filter:
    principal = actor.principal
    professional = principal.acting_professional
    if professional is None or policy.blocks(professional):
        return NOTHING
    relation = _care_relation(policy, professional)
    if relation is None:
        return own
    basis, _entry = relation
    unmasked = EVERYTHING if basis is Basis.TREATING_DOCTOR else not_(Labelled(MASKED))
    rule = matrix.professions.get(principal.profession or "")
    in_matrix = (
        NOTHING
        if rule is None
        else all_of(matches("type_code", rule.allow), not_(matches("type_code", rule.deny)))
    )
    return any_of(own, all_of(unmasked, in_matrix))
