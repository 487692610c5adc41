"""The one place that decides access and records it.

Every read, search, write, change, content download and policy change goes through
``authorize``: it loads the patient's policy (once per request, and only when the decision
reads it), asks the pure decision function, writes the audit entry in the caller's
transaction when the access goes ahead, and raises ``AccessDenied`` -- carrying its own
audit record, written after the rollback -- when it does not. Reads, which change nothing
but the log, go through ``authorize_read``: the same decision and the same record, whose
entry is committed with those of the reads arriving together, before the read's response
goes out (``vault.access.group``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from vault.access.filters import Filter
from vault.access.group import WRITTEN, Deferred, GroupCommit, Pending
from vault.access.journal import AuditService, holds_chain
from vault.access.matrix import AuthorizationMatrix, default_matrix
from vault.access.permissions import AUDIT_ACTION, Permission
from vault.access.policy import (
    REPRESENTATIVE_ROLE,
    Actor,
    Basis,
    Decision,
    DocumentFacts,
    Purpose,
    decide,
    needs_policy,
    readable,
)
from vault.access.records import AuditRecord, Outcome, WrittenEntry
from vault.access.repository import PolicySnapshots, load_policy, own_record_state
from vault.access.state import MetadataChange, PatientPolicy, PolicyChange
from vault.db import Session, SessionFactory
from vault.errors import NotFound, VaultError
from vault.identity.principal import INS_SYSTEMS, Principal, Role
from vault.models.base import utcnow
from vault.observability import metrics
from vault.storage.keys.provider import KeyProvider

CHANGES = frozenset({Permission.DOCUMENT_UPDATE, Permission.DOCUMENT_DELETE})


class AccessDenied(NotFound):
    """Answered as 404 so that what may not be seen is indistinguishable from absence."""

    def __init__(self, record: AuditRecord, what: str = "Resource") -> None:
        super().__init__(f"{what} not found")
        self.audit_record = record


class ChangeRefused(AccessDenied):
    """A change to a document the caller can see but may not change in this way: nothing
    is hidden by saying so, so it is a 403."""

    status_code = 403
    issue_code = "forbidden"

    def __init__(self, record: AuditRecord) -> None:
        super().__init__(record)
        self.message = "You may not make this change to this document"
        self.args = (self.message,)


class RequestRefused(AccessDenied):
    """Refused for what the request asks, by a caller who may ask such things (a legal
    representation without grounds): saying why hides nothing, so it is a 422."""

    status_code = 422
    issue_code = "business-rule"

    def __init__(self, record: AuditRecord, reason: str) -> None:
        super().__init__(record)
        self.message = f"Refused: {reason}"
        self.args = (self.message,)
        if record.detail.get("permission") == "document:create":
            self.expression = "DocumentReference.securityLabel"


class SpaceClosed(AccessDenied):
    """A write into a record its patient closed, by someone who could otherwise write into
    it: they must learn why nothing was stored. 409: the refusal is about the record's
    state, which its patient may change (by reopening it), not about the request."""

    status_code = 409
    issue_code = "business-rule"

    def __init__(self, record: AuditRecord) -> None:
        super().__init__(record)
        self.message = "The patient's space is closed: nothing was stored"
        self.args = (self.message,)


def _acting(actor: Actor, decision: Decision, patient_id: str) -> dict[str, str | None]:
    """A legal representative acts in their own name, on behalf of the patient: the log
    names them (their own record, or the key the representation names them by), not the
    patient."""
    if decision.basis is not Basis.REPRESENTATIVE and "representation" not in dict(decision.detail):
        return {}
    return {
        "acting_role": REPRESENTATIVE_ROLE,
        "acting_id": actor.own_patient_id or actor.proxy_key,
        "acting_for": patient_id,
    }


def _issuer_detail(actor: Actor) -> dict[str, str]:
    # A caregiver account means something only with its issuer: the history says which.
    if actor.proxy_issuer is None:
        return {}
    return {"actor_issuer": actor.proxy_issuer}


def ins_index(provider: KeyProvider, system: str, value: str) -> bytes:
    # Both INS namespaces name the same person space for lookups.
    namespace = "ins" if system in INS_SYSTEMS else system
    return provider.blind_index("patient-identifier", f"{namespace}|{value}".encode())


# The record a refusal of something that does not exist is decided against: ids are
# uuid4, whose version digit is never 0, so no record has this one.
NO_RECORD = "00000000-0000-0000-0000-000000000000"
# What of a probed id the log keeps: a FHIR id, or nothing (the column is 64 long, and the
# log is no place for whatever else a caller typed into a URL).
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


# Refusals made in a session's request, for the API to throttle actors refused over and
# over (docs/threat-model.md): counted where they are decided, whatever the answer.
_REFUSALS = "vault.access.refusals"


def take_refusals(session: Session) -> int:
    """How many refusals the access service made in this session's request since last
    asked."""
    return int(session.info.pop(_REFUSALS, 0))


def _note_refusal(session: Session) -> None:
    session.info[_REFUSALS] = int(session.info.get(_REFUSALS, 0)) + 1


@dataclass(frozen=True)
class Surface:
    """What a surface's failed requests leave on record (``AccessService.end_failed``): the
    request methods that write, each with the action it attempts, and the purpose of use."""

    purpose: str
    writes: Mapping[str, str]


# The FHIR and JSON APIs (vault/api): every writing method, on behalf of care.
API = Surface("TREAT", {"POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D"})
# The patient's space (vault/web): its forms post, at the patient's request.
SPACE = Surface("PATRQT", {"POST": "C"})


def caregiver_key(account: str) -> str:
    return f"caregiver:{account}"


def ins_key(provider: KeyProvider, value: str) -> str:
    """How a policy names a person identified by INS: by the keyed blind index, since an
    INS must never sit in clear."""
    return _key_of_index(ins_index(provider, "ins", value))


def _key_of_index(index: bytes) -> str:
    return "ins:" + index.hex()


class AccessService:
    def __init__(
        self,
        audit: AuditService,
        keys: KeyProvider,
        matrix: AuthorizationMatrix | None = None,
        group: GroupCommit | None = None,
    ) -> None:
        self.audit = audit
        self._keys = keys
        self.matrix = matrix or default_matrix()
        # Where reads' entries are committed together; None: in the request's transaction.
        self.group = group

    def actor(self, session: Session, principal: Principal) -> Actor:
        own = None
        proxy = None
        issuer = None
        closed = False
        if principal.role is Role.PATIENT:
            # An INS is a national identifier: any issuer trusted for the patient role vouches
            # for it, so the key names no issuer.
            index = ins_index(self._keys, "ins", principal.subject)
            own, closed = own_record_state(session, index)
            proxy = _key_of_index(index)
        elif principal.role is Role.CAREGIVER:
            # A caregiver account exists only at the issuer that vouched for it.
            proxy = caregiver_key(principal.subject)
            issuer = principal.issuer
        return Actor(
            principal,
            own,
            proxy,
            PolicySnapshots(session),
            proxy_issuer=issuer,
            own_record_closed=closed,
        )

    def grantee_key(self, system: str, value: str, issuer: str | None) -> tuple[str, str | None]:
        """How a policy entry names a grantee: (key, issuer); a person named by INS needs no
        issuer, a caregiver account is the account of one issuer."""
        if system in INS_SYSTEMS:
            return ins_key(self._keys, value), None
        return caregiver_key(value), issuer

    def policy(self, session: Session, actor: Actor, patient_id: str) -> PatientPolicy:
        if actor.policies is not None:
            return actor.policies.get(patient_id)
        return load_policy(session, patient_id, utcnow())

    def _deciding_policy(
        self, session: Session, actor: Actor, patient_id: str
    ) -> PatientPolicy | None:
        """The policy ``decide`` reads, loaded only when it reads one (a statement saved on
        every patient's request for their own record)."""
        if not needs_policy(actor, patient_id):
            return None
        return self.policy(session, actor, patient_id)

    @staticmethod
    def forget(actor: Actor, patient_id: str) -> None:
        """After changing a patient's policy: the rest of the request sees the change."""
        if isinstance(actor.policies, PolicySnapshots):
            actor.policies.forget(patient_id)

    def check(
        self,
        actor: Actor,
        permission: Permission,
        patient_id: str,
        document: DocumentFacts | None = None,
        *,
        change: MetadataChange | PolicyChange | None = None,
    ) -> Decision:
        """Decide without recording: for filtering search results, whose one search is
        recorded by ``authorize``. An actor built without a request's policy source is
        judged as if the patient had granted nothing."""
        policy = (
            actor.policies.get(patient_id)
            if actor.policies is not None and needs_policy(actor, patient_id)
            else None
        )
        return decide(
            actor,
            permission,
            patient_id,
            document,
            policy=policy,
            change=change,
            matrix=self.matrix,
        )

    def readable(self, actor: Actor, patient_id: str) -> Filter:
        """What ``check`` would let the actor read of this record, as a filter for the
        search's query (the same policy snapshot, the same matrix)."""
        policy = (
            actor.policies.get(patient_id)
            if actor.policies is not None and needs_policy(actor, patient_id)
            else None
        )
        return readable(actor, patient_id, policy=policy, matrix=self.matrix)

    def authorize(
        self,
        session: Session,
        actor: Actor,
        permission: Permission,
        patient_id: str,
        *,
        document: DocumentFacts | None = None,
        change: MetadataChange | PolicyChange | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        detail: dict[str, str] | None = None,
        not_found_as: str = "Resource",
    ) -> Decision:
        return self.authorize_recorded(
            session,
            actor,
            permission,
            patient_id,
            document=document,
            change=change,
            resource_type=resource_type,
            resource_id=resource_id,
            detail=detail,
            not_found_as=not_found_as,
        )[0]

    def authorize_recorded(
        self,
        session: Session,
        actor: Actor,
        permission: Permission,
        patient_id: str,
        *,
        document: DocumentFacts | None = None,
        change: MetadataChange | PolicyChange | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        detail: dict[str, str] | None = None,
        not_found_as: str = "Resource",
    ) -> tuple[Decision, WrittenEntry]:
        """``authorize``, also returning the audit entry it wrote (for what must refer to
        it, such as a notification addressed to someone other than the patient)."""
        decision, record = self._decide(
            session,
            actor,
            permission,
            patient_id,
            document=document,
            change=change,
            resource_type=resource_type,
            resource_id=resource_id,
            detail=detail,
            not_found_as=not_found_as,
        )
        return decision, self.audit.append(session, record)

    def authorize_unrecorded(
        self,
        session: Session,
        actor: Actor,
        permission: Permission,
        patient_id: str,
        *,
        resource_type: str | None = None,
        resource_id: str | None = None,
        detail: dict[str, str] | None = None,
        not_found_as: str = "Resource",
    ) -> Decision:
        """``authorize`` for what holds no health data about the patient (how far an
        export job has got, asked again every few seconds while it runs): the same
        decision from the same policy, and a refusal raises carrying its record, written
        as every refusal is; only a granted access writes nothing. The caller says in a
        comment why what it reads is not health data: the log is the patient's account of
        who saw their health data, and each access to that stays recorded."""
        decision, _record = self._decide(
            session,
            actor,
            permission,
            patient_id,
            document=None,
            resource_type=resource_type,
            resource_id=resource_id,
            detail=detail,
            not_found_as=not_found_as,
        )
        return decision

    def authorize_read(
        self,
        session: Session,
        actor: Actor,
        permission: Permission,
        patient_id: str,
        *,
        document: DocumentFacts | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        detail: dict[str, str] | None = None,
        not_found_as: str = "Resource",
    ) -> Pending | Deferred:
        """``authorize`` for a read, which changes nothing but the log: its entry is
        committed with those of the reads ready at the same moment (``vault.access.group``).
        The caller reads, then calls ``wait()`` on what this returns, which commits the
        entry: nothing read goes out before it returns."""
        _decision, record = self._decide(
            session,
            actor,
            permission,
            patient_id,
            document=document,
            resource_type=resource_type,
            resource_id=resource_id,
            detail=detail,
            not_found_as=not_found_as,
        )
        if self.group is None or holds_chain(session):
            # A request that already wrote to the log (a document read before its content,
            # say) holds chain heads: its read is recorded in its own transaction, never
            # left waiting for a committer that may need those heads.
            self.audit.append(session, record)
            return WRITTEN
        return Deferred(self.group, record)

    def _decide(
        self,
        session: Session,
        actor: Actor,
        permission: Permission,
        patient_id: str,
        *,
        document: DocumentFacts | None,
        change: MetadataChange | PolicyChange | None = None,
        resource_type: str | None,
        resource_id: str | None,
        detail: dict[str, str] | None,
        not_found_as: str,
    ) -> tuple[Decision, AuditRecord]:
        """The decision and its audit record; a refusal raises, carrying its record."""
        policy = self._deciding_policy(session, actor, patient_id)
        decision = decide(
            actor,
            permission,
            patient_id,
            document,
            policy=policy,
            change=change,
            matrix=self.matrix,
        )
        record = AuditRecord(
            action=AUDIT_ACTION[permission],
            outcome=Outcome.SUCCESS if decision.allowed else Outcome.DENIED,
            purpose=decision.purpose.value,
            principal=actor.principal,
            patient_id=patient_id,
            resource_type=resource_type,
            resource_id=resource_id,
            actor_patient_id=actor.own_patient_id,
            detail={
                **(detail or {}),
                "permission": permission.value,
                "reason": decision.reason,
                **({"basis": decision.basis.value} if decision.basis else {}),
                # So that a patient's history can say who read: "Médecin", not a number.
                **(
                    {"profession": actor.principal.profession}
                    if actor.principal.profession and actor.principal.acting_professional
                    else {}
                ),
                **dict(decision.detail),
                **_issuer_detail(actor),
            },
            **_acting(actor, decision, patient_id),
        )
        metrics.access_decided(permission.value, decision.allowed)
        if decision.unprocessable:
            raise RequestRefused(record, decision.reason)
        if decision.closed:
            raise SpaceClosed(record)
        if not decision.allowed:
            _note_refusal(session)
            if permission in CHANGES and document is not None:
                seen = decide(
                    actor,
                    Permission.DOCUMENT_READ,
                    patient_id,
                    document,
                    policy=policy,
                    matrix=self.matrix,
                )
                if seen:
                    raise ChangeRefused(record)
            raise AccessDenied(record, not_found_as)
        return decision, record

    def refuse_unknown(
        self,
        session: Session,
        actor: Actor,
        permission: Permission,
        *,
        about_document: bool = False,
        resource_type: str | None = None,
        resource_id: str | None = None,
        detail: dict[str, str] | None = None,
        not_found_as: str = "Resource",
    ) -> AccessDenied:
        """The refusal of something that does not exist, made as a refusal of something
        that may not be seen is, and at the same cost: the policy of a record that cannot
        exist is loaded, the decision taken (on a stand-in document when the access is to
        one), and the refusal returned to be recorded as every refusal is -- on the log's
        chain that names no patient. Neither the answer nor the time it takes tells "does
        not exist" from "exists but not for you" (docs/threat-model.md)."""
        document = (
            DocumentFacts(NO_RECORD, "", "", frozenset(), "current") if about_document else None
        )
        policy = self._deciding_policy(session, actor, NO_RECORD)
        decision = decide(actor, permission, NO_RECORD, document, policy=policy, matrix=self.matrix)
        _note_refusal(session)
        metrics.access_decided(permission.value, allowed=False)
        record = AuditRecord(
            action=AUDIT_ACTION[permission],
            outcome=Outcome.DENIED,
            purpose=decision.purpose.value,
            principal=actor.principal,
            resource_type=resource_type,
            resource_id=resource_id if resource_id and _FHIR_ID.fullmatch(resource_id) else None,
            actor_patient_id=actor.own_patient_id,
            detail={**(detail or {}), "permission": permission.value, "reason": "does not exist"},
        )
        return AccessDenied(record, not_found_as)

    def require_visible(
        self,
        session: Session,
        actor: Actor,
        permission: Permission,
        document: DocumentFacts,
        *,
        resource_type: str | None = None,
        resource_id: str | None = None,
        not_found_as: str = "Resource",
    ) -> None:
        """Before a change whose content decides it is known: refuse anyone who may not
        even see the document, exactly as ``authorize`` would (404, recorded). The change
        itself still goes through ``authorize``."""
        policy = self._deciding_policy(session, actor, document.patient_id)
        seen = decide(
            actor,
            Permission.DOCUMENT_READ,
            document.patient_id,
            document,
            policy=policy,
            matrix=self.matrix,
        )
        if seen:
            return
        _note_refusal(session)
        metrics.access_decided(permission.value, allowed=False)
        raise AccessDenied(
            AuditRecord(
                action=AUDIT_ACTION[permission],
                outcome=Outcome.DENIED,
                purpose=seen.purpose.value,
                principal=actor.principal,
                patient_id=document.patient_id,
                resource_type=resource_type,
                resource_id=resource_id,
                actor_patient_id=actor.own_patient_id,
                detail={"permission": permission.value, "reason": seen.reason},
            ),
            not_found_as,
        )

    def record(self, session: Session, record: AuditRecord) -> None:
        self.audit.append(session, record)

    def authorize_search(
        self, session: Session, actor: Actor, patient_id: str, *, resource_type: str
    ) -> Pending | Deferred | None:
        """``authorize_read`` for a search, whose refusal is no error: a search on a record
        one may not search looks like a search on a record with no visible document (so a
        patient cannot probe for others' INS). The refusal is recorded here, in the
        caller's transaction, which writes nothing else; None says so."""
        try:
            return self.authorize_read(
                session, actor, Permission.DOCUMENT_SEARCH, patient_id, resource_type=resource_type
            )
        except AccessDenied as denied:
            self.audit.append(session, denied.audit_record)
            return None

    def refuse_unknown_search(self, session: Session, actor: Actor, *, resource_type: str) -> None:
        """A search on a patient who has no record: refused and recorded as a search on a
        record one may not search is (``authorize_search``), at the same cost."""
        denied = self.refuse_unknown(
            session, actor, Permission.DOCUMENT_SEARCH, resource_type=resource_type
        )
        self.audit.append(session, denied.audit_record)

    def end_failed(
        self,
        factory: SessionFactory,
        session: Session,
        principal: Principal,
        error: BaseException,
        *,
        surface: Surface,
        method: str,
    ) -> None:
        """After a request failed: roll its transaction back, then record, on its own, what
        must outlive the rollback -- the refusal an ``AccessDenied`` carries, or a write that
        failed with a ``VaultError``. Anything else (a cancellation, a bug) leaves no entry."""
        try:
            session.rollback()
        finally:
            session.close()
        record: AuditRecord | None = None
        if isinstance(error, AccessDenied):
            record = error.audit_record
        elif isinstance(error, VaultError) and method in surface.writes:
            record = AuditRecord(
                action=surface.writes[method],
                outcome=Outcome.FAILED,
                purpose=surface.purpose,
                principal=principal,
                detail={"error": type(error).__name__, "status": str(error.status_code)},
            )
        if record is not None:
            self.audit.append_standalone(factory, record)

    def record_replayed_deletion(
        self,
        session: Session,
        operator: Principal,
        patient_id: str,
        document_id: str,
        deleted_at: datetime,
    ) -> None:
        """A deletion shredded again after a restore (vault/backup/shreds.py): an operator's
        act that no decision gates -- the deletion it replays was decided and recorded once
        -- but which the log must show."""
        self.audit.append(
            session,
            AuditRecord(
                action=AUDIT_ACTION[Permission.DOCUMENT_DELETE],
                outcome=Outcome.SUCCESS,
                purpose=Purpose.OPERATIONS.value,
                principal=operator,
                patient_id=patient_id,
                resource_type="DocumentReference",
                resource_id=document_id,
                detail={
                    "reason": "deletion replayed after a restore",
                    "deleted_at": deleted_at.isoformat(),
                },
            ),
        )
