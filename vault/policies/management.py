"""Changing a patient's access policy, and reading it.

Each change is decided and audited by ``AccessService.authorize`` and bumps the policy's
version; entries are never rewritten, only ended, so the history stays whole. Masks are
document labels: they change through the document's own metadata update, which keeps
every version.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from vault.access import notifications, repository
from vault.access.permissions import Permission
from vault.access.policy import Actor, author_of
from vault.access.service import AccessService, caregiver_key
from vault.access.state import (
    ALL_CATEGORIES,
    MASKED,
    MINOR,
    VISIBILITY_SYSTEM,
    DelegationScope,
    EmergencyMode,
    EntryKind,
    PolicyChange,
    ProtectionMeasure,
    RepresentationGrounds,
    Verb,
)
from vault.db import Session
from vault.documents import repository as documents
from vault.documents.patch import Operation
from vault.documents.service import DocumentService
from vault.errors import Conflict, InvalidResource, NotFound
from vault.identity.principal import INS_SYSTEMS
from vault.models import AccessPolicyEntry, CaregiverInvitation, Patient
from vault.models.base import new_id, utcnow
from vault.patients import repository as patients_repository
from vault.patients.service import patient_context
from vault.storage import crypto
from vault.storage.envelope import Envelope

MAX_CATEGORIES = 50
# An invitation code: 32 random bytes, URL-safe; accepted for a week.
CODE_BYTES = 32
MAX_CODE_LENGTH = 128
INVITATION_DAYS = 7
INVITATION_UNKNOWN = "Invitation not found, already used or expired"
INVITATION_NOT_PENDING = "Invitation not found, or no longer waiting to be accepted"
INVITATION_ACCEPTED = "This invitation was accepted: revoke the delegation it became instead"
MAJORITY = 18
MASK_LABEL = {
    "coding": [
        {
            "system": VISIBILITY_SYSTEM,
            "code": MASKED,
            "display": "Masqué aux professionnels de santé",
        }
    ]
}
# A professional's own entries in a policy: what a patient adds and ends by naming them.
PROFESSIONAL_KINDS = frozenset(
    {EntryKind.TREATING_DOCTOR, EntryKind.CARE_TEAM, EntryKind.BLOCK, EntryKind.POINT_OF_CARE}
)


def note_context(entry_id: str, patient_id: str) -> bytes:
    return crypto.associated_data("AccessPolicyEntry", entry_id, patient_id)


def one_year_after(moment: datetime) -> datetime:
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + 1, day=28)


@dataclass(frozen=True)
class Change:
    entry: AccessPolicyEntry
    created: bool


@dataclass(frozen=True)
class PolicyView:
    patient_id: str
    version: int
    at: datetime
    entries: Sequence[AccessPolicyEntry]
    # Emergency accesses' written reasons, decrypted for the patient, by entry id.
    reasons: dict[str, str]
    masked_documents: list[str]


@dataclass(frozen=True)
class HeldDelegation:
    entry: AccessPolicyEntry
    # The caregiver's name as their issuer gave it on accepting an invitation, if any.
    display_name: str | None
    in_force: bool


@dataclass(frozen=True)
class DelegationsView:
    delegations: list[HeldDelegation]
    # Offered and not yet accepted, code still valid.
    invitations: list[CaregiverInvitation]


@dataclass(frozen=True)
class PolicyEvent:
    version: int
    at: datetime
    change: Verb
    entry: AccessPolicyEntry


class PolicyService:
    def __init__(
        self,
        access: AccessService,
        documents: DocumentService,
        envelope: Envelope,
        *,
        emergency_minutes: int,
        point_of_care_days: int,
        trusted_issuers: frozenset[str] = frozenset(),
        default_caregiver_issuer: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.access = access
        # A caregiver account is an account at one issuer: naming one means naming the
        # issuer too; without it, the vault's own (embedded) issuer, when it is on.
        self.trusted_issuers = trusted_issuers
        self.default_caregiver_issuer = default_caregiver_issuer
        self.documents = documents
        self.envelope = envelope
        self.emergency_duration = timedelta(minutes=emergency_minutes)
        self.point_of_care_duration = timedelta(days=point_of_care_days)
        self.clock = clock

    # -- reading ---------------------------------------------------------------------------

    def view(self, session: Session, actor: Actor, patient_id: str) -> PolicyView:
        self._require_patient(session, actor, patient_id, Permission.POLICY_READ)
        self.access.authorize(
            session,
            actor,
            Permission.POLICY_READ,
            patient_id,
            resource_type="Consent",
            not_found_as="Patient",
        )
        now = self.clock()
        policy = self.access.policy(session, actor, patient_id)
        entries = [
            row
            for row in repository.all_entries(session, patient_id)
            if row.ended_at is None and (row.expires_at is None or row.expires_at > now)
        ]
        reasons = {
            row.id: self._reason(session, row) for row in entries if row.note_ciphertext is not None
        }
        return PolicyView(
            patient_id,
            policy.version,
            now,
            entries,
            reasons,
            self._masked_documents(session, actor, patient_id),
        )

    def history(self, session: Session, actor: Actor, patient_id: str) -> list[PolicyEvent]:
        """Every change, newest first: each entry's addition and, once ended, its ending."""
        self._require_patient(
            session, actor, patient_id, Permission.POLICY_READ, {"interaction": "history"}
        )
        self.access.authorize(
            session,
            actor,
            Permission.POLICY_READ,
            patient_id,
            resource_type="Consent",
            detail={"interaction": "history"},
            not_found_as="Patient",
        )
        events = []
        for row in repository.all_entries(session, patient_id):
            events.append(PolicyEvent(row.version_added, row.starts_at, Verb.ADD, row))
            if row.version_ended is not None and row.ended_at is not None:
                events.append(PolicyEvent(row.version_ended, row.ended_at, Verb.END, row))
        return sorted(events, key=lambda event: (event.version, event.change), reverse=True)

    def relationships_of(self, session: Session, actor: Actor) -> list[AccessPolicyEntry]:
        """The delegations and representations in force that name the caller."""
        if actor.proxy_key is None:
            return []
        found = []
        kinds = (EntryKind.DELEGATION, EntryKind.REPRESENTATIVE)
        rows = repository.entries_naming(
            session, actor.proxy_key, actor.proxy_issuer, kinds, self.clock()
        )
        for row in rows:
            decision = self.access.check(
                actor,
                Permission.POLICY_READ,
                row.patient_id,
                change=PolicyChange(EntryKind(row.kind), Verb.READ, row.id),
            )
            if decision:
                found.append(row)
        return found

    # -- professionals: treating doctor, care team, blocks, point of care -------------------

    def add_professional(
        self, session: Session, actor: Actor, patient_id: str, kind: EntryKind, idnps: str
    ) -> Change:
        """Name a professional as treating doctor (replacing the previous one), care team
        member or blocked. Naming one already named changes nothing."""
        if kind not in (EntryKind.TREATING_DOCTOR, EntryKind.CARE_TEAM, EntryKind.BLOCK):
            raise InvalidResource(f"{kind} is not set by naming a professional")
        known = self._exists(session, patient_id)
        now = self.clock()
        existing = repository.open_entries(session, patient_id, kind, idnps, now)
        entry_id = existing[0].id if existing else new_id()
        self._authorize(
            session, actor, patient_id, PolicyChange(kind, Verb.ADD, entry_id), known=known
        )
        if existing:
            return Change(existing[0], created=False)
        version = repository.next_version(session, patient_id, now)
        if kind is EntryKind.TREATING_DOCTOR:
            # One treating doctor at a time.
            previous = repository.open_entries(session, patient_id, kind)
            self._end_rows(session, actor, previous, version, now)
        row = self._insert(session, actor, patient_id, entry_id, kind, idnps, version, now)
        self.access.forget(actor, patient_id)
        return Change(row, created=True)

    def remove_professional(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        kind: EntryKind,
        idnps: str | None = None,
    ) -> None:
        """End the entries of this kind naming the professional (for the treating doctor,
        whoever it is)."""
        if kind not in PROFESSIONAL_KINDS:
            raise InvalidResource(f"{kind} is not ended by naming a professional")
        known = self._exists(session, patient_id)
        rows = repository.open_entries(session, patient_id, kind, idnps)
        self._authorize(
            session,
            actor,
            patient_id,
            PolicyChange(kind, Verb.END, rows[0].id if rows else None),
            known=known,
        )
        if not rows:
            raise NotFound(f"No {kind} entry names this professional")
        now = self.clock()
        self._end_rows(session, actor, rows, repository.next_version(session, patient_id, now), now)
        self.access.forget(actor, patient_id)

    def block_declarer(
        self, session: Session, actor: Actor, patient_id: str, idnps: str
    ) -> AccessPolicyEntry:
        """The patient's one step against a point-of-care declaration they do not
        recognise: the professional is blocked and their consent ended, in one policy
        version. Returns the block."""
        known = self._exists(session, patient_id)
        now = self.clock()
        declared = repository.open_entries(session, patient_id, EntryKind.POINT_OF_CARE, idnps)
        blocks = repository.open_entries(session, patient_id, EntryKind.BLOCK, idnps, now)
        block_id = blocks[0].id if blocks else new_id()
        ending = declared[0].id if declared else None
        self._authorize(
            session,
            actor,
            patient_id,
            PolicyChange(EntryKind.POINT_OF_CARE, Verb.END, ending),
            known=known,
        )
        self._authorize(
            session, actor, patient_id, PolicyChange(EntryKind.BLOCK, Verb.ADD, block_id)
        )
        if not declared and blocks:
            return blocks[0]
        version = repository.next_version(session, patient_id, now)
        self._end_rows(session, actor, declared, version, now)
        block = (
            blocks[0]
            if blocks
            else self._insert(
                session, actor, patient_id, block_id, EntryKind.BLOCK, idnps, version, now
            )
        )
        self.access.forget(actor, patient_id)
        return block

    # -- emergency opt-out ------------------------------------------------------------------

    def set_emergency_refusal(
        self, session: Session, actor: Actor, patient_id: str, *, refused: bool
    ) -> bool:
        """Whether the patient refuses emergency access in advance; returns whether the
        policy changed."""
        kind = EntryKind.EMERGENCY_OPT_OUT
        known = self._exists(session, patient_id)
        rows = repository.open_entries(session, patient_id, kind)
        entry_id = rows[0].id if rows else (new_id() if refused else None)
        verb = Verb.ADD if refused else Verb.END
        self._authorize(session, actor, patient_id, PolicyChange(kind, verb, entry_id), known=known)
        if bool(rows) == refused:
            return False
        now = self.clock()
        version = repository.next_version(session, patient_id, now)
        if refused and entry_id is not None:
            self._insert(session, actor, patient_id, entry_id, kind, None, version, now)
        else:
            self._end_rows(session, actor, rows, version, now)
        self.access.forget(actor, patient_id)
        return True

    # -- delegations -------------------------------------------------------------------------

    def grant_delegation(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        *,
        caregiver: str,
        issuer: str | None = None,
        scope: DelegationScope,
        categories: Sequence[str],
        expires_at: datetime,
    ) -> AccessPolicyEntry:
        now = self.clock()
        _check_categories(categories)
        _check_expiry(expires_at, now, "expires")
        self._require_patient(session, actor, patient_id, Permission.DELEGATION_GRANT)
        entry_id = new_id()
        key = caregiver_key(caregiver)
        vouching = self.caregiver_issuer(issuer)
        self.access.authorize(
            session,
            actor,
            Permission.DELEGATION_GRANT,
            patient_id,
            change=PolicyChange(EntryKind.DELEGATION, Verb.ADD, entry_id),
            resource_type="Consent",
            resource_id=entry_id,
            detail={"policy": EntryKind.DELEGATION.value, "change": Verb.ADD.value},
            not_found_as="Patient",
        )
        version = repository.next_version(session, patient_id, now)
        row = self._insert(
            session,
            actor,
            patient_id,
            entry_id,
            EntryKind.DELEGATION,
            key,
            version,
            now,
            scope=scope.value,
            categories=sorted(set(categories)),
            expires_at=expires_at,
            issuer=vouching,
        )
        self.access.forget(actor, patient_id)
        return row

    def revoke_delegation(
        self, session: Session, actor: Actor, patient_id: str, delegation_id: str
    ) -> None:
        """By the patient (or their representative), or by the caregiver giving it up.
        Takes effect at once: the next request is decided without it."""
        self._require_patient(session, actor, patient_id, Permission.DELEGATION_REVOKE)
        self.access.authorize(
            session,
            actor,
            Permission.DELEGATION_REVOKE,
            patient_id,
            change=PolicyChange(EntryKind.DELEGATION, Verb.END, delegation_id),
            resource_type="Consent",
            resource_id=delegation_id,
            detail={"policy": EntryKind.DELEGATION.value, "change": Verb.END.value},
            not_found_as="Delegation",
        )
        row = repository.entry(session, patient_id, delegation_id)
        if row is None or row.kind != EntryKind.DELEGATION or row.ended_at is not None:
            raise NotFound("Delegation not found")
        now = self.clock()
        self._end_rows(
            session, actor, [row], repository.next_version(session, patient_id, now), now
        )
        self.access.forget(actor, patient_id)

    # -- invitations -------------------------------------------------------------------------

    def invite_caregiver(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        *,
        may_add: bool,
        categories: Sequence[str],
        until: datetime,
    ) -> tuple[CaregiverInvitation, str]:
        """The patient (or a minor's representative) offers a delegation: reading, or
        reading and adding, some categories, until a day at most a year ahead. Returns the
        invitation and its one-time code, shown now and never again (only its hash is
        kept); the code is accepted for ``INVITATION_DAYS`` days."""
        now = self.clock()
        _check_categories(categories)
        _check_expiry(until, now, "until")
        self._require_patient(session, actor, patient_id, Permission.DELEGATION_GRANT)
        invitation_id = new_id()
        self.access.authorize(
            session,
            actor,
            Permission.DELEGATION_GRANT,
            patient_id,
            change=PolicyChange(EntryKind.DELEGATION, Verb.ADD, invitation_id),
            resource_type="Consent",
            resource_id=invitation_id,
            detail={"policy": EntryKind.DELEGATION.value, "change": "invite"},
            not_found_as="Patient",
        )
        code = secrets.token_urlsafe(CODE_BYTES)
        role, by = author_of(actor)
        scope = DelegationScope.READ_UPLOAD if may_add else DelegationScope.READ
        row = CaregiverInvitation(
            id=invitation_id,
            patient_id=patient_id,
            code_hash=code_hash(code),
            scope=scope.value,
            categories=sorted(set(categories)),
            delegation_expires_at=until,
            code_expires_at=now + timedelta(days=INVITATION_DAYS),
            created_at=now,
            created_by_role=role,
            created_by=by,
        )
        repository.add(session, row)
        repository.add_invitation_code(session, row)
        return row, code

    def accept_invitation(self, session: Session, actor: Actor, code: str) -> AccessPolicyEntry:
        """A caregiver, signed in with their own identity, takes up the delegation: it names
        that identity (issuer and subject) and the code is used up. An unknown, used or
        expired code gets one and the same answer."""
        now = self.clock()
        row = (
            repository.invitation_by_code_hash(session, code_hash(code))
            if 0 < len(code) <= MAX_CODE_LENGTH
            else None
        )
        if (
            row is None
            or row.accepted_at is not None
            or row.code_expires_at <= now
            or row.delegation_expires_at <= now
            or actor.proxy_key is None
        ):
            raise NotFound(INVITATION_UNKNOWN)
        entry_id = new_id()
        self.access.authorize(
            session,
            actor,
            Permission.INVITATION_ACCEPT,
            row.patient_id,
            change=PolicyChange(EntryKind.DELEGATION, Verb.ADD, entry_id, invited=True),
            resource_type="Consent",
            resource_id=entry_id,
            detail={"policy": EntryKind.DELEGATION.value, "change": "accept", "invitation": row.id},
            not_found_as="Invitation",
        )
        version = repository.next_version(session, row.patient_id, now)
        entry = self._insert(
            session,
            actor,
            row.patient_id,
            entry_id,
            EntryKind.DELEGATION,
            actor.proxy_key,
            version,
            now,
            scope=row.scope,
            categories=list(row.categories),
            expires_at=row.delegation_expires_at,
            issuer=actor.proxy_issuer,
        )
        if actor.principal.name:
            self._seal_note(session, entry, {"display_name": actor.principal.name})
        row.accepted_at = now
        row.delegation_id = entry_id
        session.flush()
        self.access.forget(actor, row.patient_id)
        return entry

    def withdraw_invitation(
        self, session: Session, actor: Actor, patient_id: str, invitation_id: str
    ) -> None:
        """Whoever may invite (the patient, a minor's representative) takes back an
        invitation nobody has accepted yet: its code is then refused like an expired one,
        with the same answer. Decided as the end of the delegation it offered. An accepted
        invitation is a delegation now, revoked as such."""
        self._require_patient(session, actor, patient_id, Permission.DELEGATION_REVOKE)
        self.access.authorize(
            session,
            actor,
            Permission.DELEGATION_REVOKE,
            patient_id,
            change=PolicyChange(EntryKind.DELEGATION, Verb.END, invitation_id),
            resource_type="Consent",
            resource_id=invitation_id,
            detail={
                "policy": EntryKind.DELEGATION.value,
                "change": "withdraw",
                "invitation": invitation_id,
            },
            not_found_as="Invitation",
        )
        now = self.clock()
        row = repository.invitation(session, patient_id, invitation_id)
        if row is None or (row.accepted_at is None and row.code_expires_at <= now):
            raise NotFound(INVITATION_NOT_PENDING)
        if row.accepted_at is not None:
            raise Conflict(INVITATION_ACCEPTED)
        # As closing the record does (vault/records/repository.py): the code lapses now, so
        # acceptance refuses it as it refuses any expired code; the row and its audit
        # entry keep what was offered and who withdrew it.
        row.code_expires_at = now
        session.flush()

    def delegations(self, session: Session, actor: Actor, patient_id: str) -> DelegationsView:
        """Every delegation, in force or past, with the identity that holds it and the
        name its issuer gave, and the invitations still waiting to be accepted."""
        self._require_patient(
            session, actor, patient_id, Permission.POLICY_READ, {"interaction": "delegations"}
        )
        self.access.authorize(
            session,
            actor,
            Permission.POLICY_READ,
            patient_id,
            resource_type="Consent",
            detail={"interaction": "delegations"},
            not_found_as="Patient",
        )
        now = self.clock()
        held = [
            HeldDelegation(
                row,
                self._note(session, row).get("display_name"),
                row.ended_at is None and (row.expires_at is None or row.expires_at > now),
            )
            for row in repository.delegations_of(session, patient_id)
        ]
        waiting = [
            row
            for row in repository.invitations_of(session, patient_id)
            if row.accepted_at is None and row.code_expires_at > now
        ]
        return DelegationsView(held, waiting)

    # -- legal representatives ---------------------------------------------------------------

    def add_representative(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        *,
        system: str,
        value: str,
        until: datetime | None,
        issuer: str | None = None,
        measure: ProtectionMeasure | None = None,
        measure_reference: str | None = None,
    ) -> Change:
        """Register a legal representative: of a minor (the record's birth date says so),
        or of an adult under the protection measure the request names (its type and
        reference, kept with the entry, the reference sealed). Nobody registers
        themselves. The patient, when an adult, and every representative already
        registered are notified."""
        now = self.clock()
        if until is not None and until <= now:
            raise InvalidResource("until must be in the future", expression="until")
        if (measure is None) != (measure_reference is None):
            raise InvalidResource(
                "A protection measure is named by its type and its reference together",
                expression="measure",
            )
        patient = self._require_patient(session, actor, patient_id)
        vouching = None if system in INS_SYSTEMS else self.caregiver_issuer(issuer)
        key, vouching = self.access.grantee_key(system, value, vouching)
        kind = EntryKind.REPRESENTATIVE
        minor = self._is_minor(session, patient, now)
        grounds = RepresentationGrounds(
            minor=minor,
            measure=measure,
            names_requester=_names(actor, key, vouching, system, value),
        )
        existing = repository.open_entries(session, patient_id, kind, key, now, vouching)
        entry_id = existing[0].id if existing else new_id()
        others = [
            row.id
            for row in repository.open_entries(session, patient_id, kind, at=now)
            if row.id != entry_id
        ]
        ground = measure.value if measure is not None else MINOR
        _decision, written = self.access.authorize_recorded(
            session,
            actor,
            Permission.POLICY_MANAGE,
            patient_id,
            change=PolicyChange(kind, Verb.ADD, entry_id, grounds=grounds),
            resource_type="Consent",
            resource_id=entry_id,
            detail={"policy": kind.value, "change": Verb.ADD.value, "ground": ground},
            not_found_as="Patient",
        )
        if existing:
            return Change(existing[0], created=False)
        version = repository.next_version(session, patient_id, now)
        row = self._insert(
            session,
            actor,
            patient_id,
            entry_id,
            kind,
            key,
            version,
            now,
            scope=ground,
            expires_at=until,
            issuer=vouching,
        )
        if measure_reference is not None:
            self._seal_note(session, row, {"measure_reference": measure_reference})
        rows = notifications.addressed_rows(
            written, notifications.NotificationKind.REPRESENTATIVE_REGISTERED, others
        )
        if rows:
            repository.enqueue_notifications(session, rows)
        self.access.forget(actor, patient_id)
        return Change(row, created=True)

    def _is_minor(self, session: Session, patient: Patient, now: datetime) -> bool:
        resource = self.envelope.open_json(
            session,
            patient.id,
            patient.resource_ciphertext,
            patient.resource_dek,
            patient.kek_id,
            patient_context(patient.id, patient.version),
        )
        return is_minor(resource.get("birthDate"), now.date())

    def end_representative(
        self, session: Session, actor: Actor, patient_id: str, entry_id: str
    ) -> None:
        self._require_patient(session, actor, patient_id)
        kind = EntryKind.REPRESENTATIVE
        self._authorize(session, actor, patient_id, PolicyChange(kind, Verb.END, entry_id))
        row = repository.entry(session, patient_id, entry_id)
        if row is None or row.kind != kind or row.ended_at is not None:
            raise NotFound("Representation not found")
        now = self.clock()
        self._end_rows(
            session, actor, [row], repository.next_version(session, patient_id, now), now
        )
        self.access.forget(actor, patient_id)

    # -- masks -------------------------------------------------------------------------------

    def set_mask(
        self, session: Session, actor: Actor, patient_id: str, document_id: str, *, masked: bool
    ) -> int:
        """Mask or unmask one document: a metadata update of its securityLabel, decided
        like a PATCH and kept as a new version. Returns the document's version."""
        if self.documents.patient_of(session, document_id) != patient_id:
            raise NotFound("DocumentReference not found")
        operations = [Operation(kind="delete", field="securityLabel", label_code=MASKED)]
        if masked:
            operations.append(Operation(kind="add", field="securityLabel", value=MASK_LABEL))
        updated, _resource = self.documents.update_metadata(session, actor, document_id, operations)
        return updated.current_version

    def _masked_documents(self, session: Session, actor: Actor, patient_id: str) -> list[str]:
        query = documents.search_query(
            documents.SearchCriteria(patient_id=patient_id, security_labels=(MASKED,))
        )
        found: list[str] = []
        after: tuple[datetime, str] | None = None
        while True:
            batch = documents.page_after(session, query, after, 200)
            for document in batch:
                # A representative is not told of documents hidden from them.
                if self.access.check(
                    actor, Permission.DOCUMENT_READ, patient_id, documents.facts(document)
                ):
                    found.append(document.id)
            if len(batch) < 200:
                return found
            after = (batch[-1].created_at, batch[-1].id)

    # -- professionals' declarations ---------------------------------------------------------

    def declare_emergency(
        self, session: Session, actor: Actor, patient_id: str, *, reason: str, mode: EmergencyMode
    ) -> AccessPolicyEntry:
        """Bris de glace, or the SAMU regulating doctor: time-limited read access, with a
        written reason the patient will read."""
        reason = reason.strip()
        if not reason:
            raise InvalidResource("An emergency access needs a written reason", expression="reason")
        self._require_patient(session, actor, patient_id, Permission.EMERGENCY_DECLARE)
        professional = actor.principal.acting_professional
        entry_id = new_id()
        self.access.authorize(
            session,
            actor,
            Permission.EMERGENCY_DECLARE,
            patient_id,
            change=PolicyChange(EntryKind.EMERGENCY, Verb.ADD, entry_id, mode),
            resource_type="Consent",
            resource_id=entry_id,
            detail={
                "policy": EntryKind.EMERGENCY.value,
                "change": Verb.ADD.value,
                "emergency": "true",
                "emergency_access": entry_id,
                "emergency_mode": mode.value,
            },
            not_found_as="Patient",
        )
        if professional is None:  # the decision refuses this already
            raise NotFound("Patient not found")
        now = self.clock()
        version = repository.next_version(session, patient_id, now)
        row = self._insert(
            session,
            actor,
            patient_id,
            entry_id,
            EntryKind.EMERGENCY,
            professional,
            version,
            now,
            scope=mode.value,
            expires_at=now + self.emergency_duration,
        )
        self._seal_note(session, row, {"reason": reason})
        self.access.forget(actor, patient_id)
        return row

    def declare_point_of_care(
        self, session: Session, actor: Actor, patient_id: str
    ) -> AccessPolicyEntry:
        """The professional records that the patient, in front of them, was informed and
        agreed: access as a care team member for a limited time, on the patient's record
        for them to see and withdraw."""
        self._require_patient(session, actor, patient_id, Permission.CONSENT_DECLARE)
        professional = actor.principal.acting_professional
        entry_id = new_id()
        self._authorize(
            session,
            actor,
            patient_id,
            PolicyChange(EntryKind.POINT_OF_CARE, Verb.ADD, entry_id),
            permission=Permission.CONSENT_DECLARE,
        )
        if professional is None:  # the decision refuses this already
            raise NotFound("Patient not found")
        now = self.clock()
        version = repository.next_version(session, patient_id, now)
        previous = repository.open_entries(
            session, patient_id, EntryKind.POINT_OF_CARE, professional
        )
        self._end_rows(session, actor, previous, version, now)
        row = self._insert(
            session,
            actor,
            patient_id,
            entry_id,
            EntryKind.POINT_OF_CARE,
            professional,
            version,
            now,
            expires_at=now + self.point_of_care_duration,
        )
        self.access.forget(actor, patient_id)
        return row

    # -- helpers -----------------------------------------------------------------------------

    def caregiver_issuer(self, issuer: str | None) -> str:
        """The issuer a caregiver account named in a request belongs to: one the vault
        trusts, or by default its own embedded issuer."""
        chosen = issuer or self.default_caregiver_issuer
        if chosen is None:
            raise InvalidResource(
                "Name the issuer of the caregiver's account (the embedded issuer is off)",
                expression="issuer",
            )
        if chosen not in self.trusted_issuers:
            raise InvalidResource("The vault does not trust this issuer", expression="issuer")
        return chosen

    @staticmethod
    def _exists(session: Session, patient_id: str) -> bool:
        return patients_repository.get(session, patient_id) is not None

    def _require_patient(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        permission: Permission = Permission.POLICY_MANAGE,
        detail: dict[str, str] | None = None,
    ) -> Patient:
        """The record, before its policy is read or changed: one that does not exist is
        refused as another's is, at the same cost (docs/threat-model.md)."""
        patient = patients_repository.get(session, patient_id)
        if patient is None:
            raise self.access.refuse_unknown(
                session,
                actor,
                permission,
                resource_type="Consent",
                detail=detail,
                not_found_as="Patient",
            )
        return patient

    def _seal_note(self, session: Session, row: AccessPolicyEntry, note: dict[str, str]) -> None:
        sealed = self.envelope.seal_json(
            session, row.patient_id, note, note_context(row.id, row.patient_id)
        )
        row.note_ciphertext = sealed.ciphertext
        row.note_dek = sealed.wrapped_dek
        row.note_kek_id = sealed.kek_id
        session.flush()

    def _authorize(
        self,
        session: Session,
        actor: Actor,
        patient_id: str,
        change: PolicyChange,
        *,
        permission: Permission = Permission.POLICY_MANAGE,
        known: bool = True,
    ) -> None:
        """``known``: whether the record exists (``_exists``), looked up before what the
        change reads of it, so that a record that does not exist runs those reads too and
        is refused here, as another's record is, at the same cost."""
        detail = {"policy": change.kind.value, "change": change.verb.value}
        if not known:
            raise self.access.refuse_unknown(
                session,
                actor,
                permission,
                resource_type="Consent",
                resource_id=change.entry_id,
                detail=detail,
                not_found_as="Patient",
            )
        self.access.authorize(
            session,
            actor,
            permission,
            patient_id,
            change=change,
            resource_type="Consent",
            resource_id=change.entry_id,
            detail=detail,
            not_found_as="Patient",
        )

    @staticmethod
    def _insert(
        session: Session,
        actor: Actor,
        patient_id: str,
        entry_id: str,
        kind: EntryKind,
        subject: str | None,
        version: int,
        now: datetime,
        *,
        scope: str | None = None,
        categories: list[str] | None = None,
        expires_at: datetime | None = None,
        issuer: str | None = None,
    ) -> AccessPolicyEntry:
        role, by = author_of(actor)
        row = AccessPolicyEntry(
            id=entry_id,
            patient_id=patient_id,
            kind=kind.value,
            subject=subject,
            issuer=issuer,
            scope=scope,
            categories=categories or [],
            starts_at=now,
            expires_at=expires_at,
            version_added=version,
            created_by_role=role,
            created_by=by,
        )
        repository.add(session, row)
        return row

    @staticmethod
    def _end_rows(
        session: Session,
        actor: Actor,
        rows: Sequence[AccessPolicyEntry],
        version: int,
        now: datetime,
    ) -> None:
        role, by = author_of(actor)
        for row in rows:
            row.ended_at = now
            row.version_ended = version
            row.ended_by_role = role
            row.ended_by = by
        session.flush()

    def _reason(self, session: Session, row: AccessPolicyEntry) -> str:
        return str(self._note(session, row).get("reason", ""))

    def _note(self, session: Session, row: AccessPolicyEntry) -> dict[str, str]:
        if row.note_ciphertext is None or row.note_dek is None or row.note_kek_id is None:
            return {}
        note = self.envelope.open_json(
            session,
            row.patient_id,
            row.note_ciphertext,
            row.note_dek,
            row.note_kek_id,
            note_context(row.id, row.patient_id),
        )
        return {str(key): str(value) for key, value in note.items()}


def is_minor(birth_date: object, today: date) -> bool:
    """Whether a FHIR ``birthDate`` (YYYY, YYYY-MM or YYYY-MM-DD) makes its holder a minor
    today for certain: a partial date is read at its earliest, so that nobody is taken for
    a minor who may be an adult. No birth date: not known to be a minor."""
    if not isinstance(birth_date, str):
        return False
    parts = birth_date.split("-")
    try:
        year = int(parts[0])
        month = int(parts[1]) if len(parts) > 1 else 1
        day = int(parts[2][:2]) if len(parts) > 2 else 1
        born = date(year, month, day)
    except (ValueError, IndexError):
        return False
    try:
        majority = born.replace(year=born.year + MAJORITY)
    except ValueError:  # born on 29 February
        majority = date(born.year + MAJORITY, 3, 1)
    return today < majority


def _names(actor: Actor, key: str, issuer: str | None, system: str, value: str) -> bool:
    """Whether the person a representation would name is the one asking: by the key a
    policy names them by, or, for anyone else (an operator), by the same account at the
    same issuer."""
    if actor.proxy_key == key and actor.proxy_issuer == issuer:
        return True
    principal = actor.principal
    return (
        system not in INS_SYSTEMS and value == principal.subject and issuer == principal.issuer
    ) or (system in INS_SYSTEMS and value == principal.subject)


def _check_expiry(expires_at: datetime, now: datetime, expression: str) -> None:
    if expires_at <= now:
        raise InvalidResource("A delegation must expire in the future", expression=expression)
    if expires_at > one_year_after(now):
        raise InvalidResource(
            "A delegation lasts at most one year; grant it again when it ends",
            expression=expression,
        )


def code_hash(code: str) -> bytes:
    """What the vault keeps of an invitation code: 256 random bits need no slow hash to
    resist guessing, only to stay unreadable to whoever reads the database."""
    return hashlib.sha256(code.encode()).digest()


def _check_categories(categories: Sequence[str]) -> None:
    if not categories:
        raise InvalidResource(
            f"Name the document categories the delegation covers ({ALL_CATEGORIES!r} for all)",
            expression="categories",
        )
    if len(categories) > MAX_CATEGORIES:
        raise InvalidResource("Too many categories", expression="categories")
    for category in categories:
        if not category or len(category) > 256 or any(c.isspace() for c in category):
            raise InvalidResource(
                "A category is a code or system|code without spaces", expression="categories"
            )
