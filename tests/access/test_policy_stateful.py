"""Random sequences of grants, revocations, masks, blocks, emergencies and opt-outs, applied
through the policy service to a real database, against a small reference model: after every
step, every actor's access to every document is what the model says."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests.access.policy_support import publish_document
from tests.factories import create_patient
from vault.access.permissions import Permission
from vault.access.policy import Actor, DocumentFacts
from vault.access.service import AccessDenied
from vault.access.state import DelegationScope, EmergencyMode, EntryKind
from vault.documents import repository as documents
from vault.identity.principal import Principal, Role
from vault.identity.scopes import DEFAULT_SCOPES, parse_scopes
from vault.models.base import utcnow

AUTHOR = "810000000100"
DOCTORS = ("810000000201", "810000000202")
CAREGIVERS = ("aidant-1", "aidant-2")
CATEGORIES = ("10", "11")
seeds = itertools.count(5000)


@dataclass
class Model:
    """What the rules say, kept as plainly as possible."""

    care_team: set[str] = field(default_factory=set)
    treating: str | None = None
    blocked: set[str] = field(default_factory=set)
    emergency: set[str] = field(default_factory=set)
    opted_out: bool = False
    masked: set[str] = field(default_factory=set)
    # delegation id -> (caregiver, can upload, categories)
    delegations: dict[str, tuple[str, bool, frozenset[str]]] = field(default_factory=dict)

    def doctor_reads(self, doctor: str, document: str) -> bool:
        if doctor in self.blocked:
            return False
        if doctor == self.treating:
            return True
        if document in self.masked:
            return False
        if doctor in self.care_team:
            return True
        return doctor in self.emergency and not self.opted_out

    def caregiver_reads(self, caregiver: str, document: str, category: str) -> bool:
        return document not in self.masked and any(
            who == caregiver and ("*" in cats or category in cats)
            for who, _, cats in self.delegations.values()
        )

    def caregiver_uploads(self, caregiver: str, category: str) -> bool:
        return any(
            who == caregiver and upload and ("*" in cats or category in cats)
            for who, upload, cats in self.delegations.values()
        )


# As the embedded issuer's tokens name it: a delegation names the caregiver's issuer too.
ISSUER = "http://testserver"


def _principal(role: Role, subject: str) -> Principal:
    return Principal(
        role=role,
        subject=subject,
        scopes=parse_scopes(DEFAULT_SCOPES[role.value]),
        profession="10" if role is Role.PROFESSIONAL else None,
        issuer=ISSUER,
    )


def test_random_policy_changes_always_decide_as_the_reference_model(client, tokens, services):
    class PolicyMachine(RuleBasedStateMachine):
        delegations = Bundle("delegations")

        def __init__(self) -> None:
            super().__init__()
            self.model = Model()
            self.patient_id, patient_ins = create_patient(client, tokens, seed=next(seeds))
            self.patient = _principal(Role.PATIENT, patient_ins)
            author = tokens.professional(AUTHOR)
            self.documents = {
                category: publish_document(client, author, self.patient_id, category=category)[0]
                for category in CATEGORIES
            }

        def _as(self, principal: Principal, change) -> bool:
            """Run one change as this principal in its own transaction; False if refused."""
            try:
                with services.session_factory() as session, session.begin():
                    change(session, services.access.actor(session, principal))
            except AccessDenied:
                return False
            return True

        def _as_patient(self, change) -> None:
            assert self._as(self.patient, change)

        # -- the rules --------------------------------------------------------------------

        @initialize(
            care_team=st.sets(st.sampled_from(DOCTORS)),
            blocked=st.sets(st.sampled_from(DOCTORS)),
            masked=st.sets(st.sampled_from(CATEGORIES)),
        )
        def start(self, care_team: set[str], blocked: set[str], masked: set[str]) -> None:
            """Start from a random policy, so that combinations show up early."""
            for doctor in care_team:
                self.name(doctor, "care-team")
            for doctor in blocked:
                self.name(doctor, "block")
            for category in masked:
                self.mask(category, masked=True)

        @rule(doctor=st.sampled_from(DOCTORS), kind=st.sampled_from(["care-team", "block"]))
        def name(self, doctor: str, kind: str) -> None:
            entry = EntryKind.CARE_TEAM if kind == "care-team" else EntryKind.BLOCK
            self._as_patient(
                lambda s, a: services.policies.add_professional(
                    s, a, self.patient_id, entry, doctor
                )
            )
            (self.model.care_team if kind == "care-team" else self.model.blocked).add(doctor)

        @rule(doctor=st.sampled_from(DOCTORS), kind=st.sampled_from(["care-team", "block"]))
        def unname(self, doctor: str, kind: str) -> None:
            named = self.model.care_team if kind == "care-team" else self.model.blocked
            if doctor not in named:
                return
            entry = EntryKind.CARE_TEAM if kind == "care-team" else EntryKind.BLOCK
            self._as_patient(
                lambda s, a: services.policies.remove_professional(
                    s, a, self.patient_id, entry, doctor
                )
            )
            named.discard(doctor)

        @rule(doctor=st.sampled_from((*DOCTORS, None)))
        def treating_doctor(self, doctor: str | None) -> None:
            kind = EntryKind.TREATING_DOCTOR
            if doctor is None:
                if self.model.treating is not None:
                    self._as_patient(
                        lambda s, a: services.policies.remove_professional(
                            s, a, self.patient_id, kind
                        )
                    )
            else:
                self._as_patient(
                    lambda s, a: services.policies.add_professional(
                        s, a, self.patient_id, kind, doctor
                    )
                )
            self.model.treating = doctor

        @rule(category=st.sampled_from(CATEGORIES), masked=st.booleans())
        def mask(self, category: str, masked: bool) -> None:
            document = self.documents[category]
            self._as_patient(
                lambda s, a: services.policies.set_mask(
                    s, a, self.patient_id, document, masked=masked
                )
            )
            (self.model.masked.add if masked else self.model.masked.discard)(document)

        @rule(
            target=delegations,
            caregiver=st.sampled_from(CAREGIVERS),
            upload=st.booleans(),
            categories=st.sets(st.sampled_from((*CATEGORIES, "*")), min_size=1),
        )
        def grant(self, caregiver: str, upload: bool, categories: set[str]) -> str:
            made: list[str] = []
            scope = DelegationScope.READ_UPLOAD if upload else DelegationScope.READ
            self._as_patient(
                lambda s, a: made.append(
                    services.policies.grant_delegation(
                        s,
                        a,
                        self.patient_id,
                        caregiver=caregiver,
                        scope=scope,
                        categories=sorted(categories),
                        expires_at=utcnow() + timedelta(days=30),
                    ).id
                )
            )
            self.model.delegations[made[0]] = (caregiver, upload, frozenset(categories))
            return made[0]

        @rule(delegation=consumes(delegations), by_caregiver=st.booleans())
        def revoke(self, delegation: str, by_caregiver: bool) -> None:
            caregiver = self.model.delegations[delegation][0]
            who = _principal(Role.CAREGIVER, caregiver) if by_caregiver else self.patient
            assert self._as(
                who,
                lambda s, a: services.policies.revoke_delegation(s, a, self.patient_id, delegation),
            )
            del self.model.delegations[delegation]

        @rule(doctor=st.sampled_from(DOCTORS))
        def emergency(self, doctor: str) -> None:
            allowed = self._as(
                _principal(Role.PROFESSIONAL, doctor),
                lambda s, a: services.policies.declare_emergency(
                    s, a, self.patient_id, reason="urgence", mode=EmergencyMode.BREAK_GLASS
                ),
            )
            assert allowed == (doctor not in self.model.blocked and not self.model.opted_out)
            if allowed:
                self.model.emergency.add(doctor)

        @rule(refused=st.booleans())
        def opt_out(self, refused: bool) -> None:
            self._as_patient(
                lambda s, a: services.policies.set_emergency_refusal(
                    s, a, self.patient_id, refused=refused
                )
            )
            self.model.opted_out = refused

        # -- every decision, after every step ----------------------------------------------

        @invariant()
        def decisions_follow_the_model(self) -> None:
            with services.session_factory() as session:
                rows = {c: documents.get_unchecked(session, d) for c, d in self.documents.items()}
                facts = {c: documents.facts(row) for c, row in rows.items() if row is not None}
                actors = {
                    (role, subject): services.access.actor(session, _principal(role, subject))
                    for role, subject in [
                        (Role.PATIENT, self.patient.subject),
                        (Role.PROFESSIONAL, AUTHOR),
                        *((Role.PROFESSIONAL, d) for d in DOCTORS),
                        *((Role.CAREGIVER, c) for c in CAREGIVERS),
                    ]
                }
                for category, fact in facts.items():
                    document = self.documents[category]
                    for (role, subject), actor in actors.items():
                        got = bool(self._reads(actor, fact))
                        assert got == self._expected(role, subject, document, category), (
                            role,
                            subject,
                            category,
                            self.model,
                        )
                for caregiver in CAREGIVERS:
                    actor = actors[(Role.CAREGIVER, caregiver)]
                    for category in CATEGORIES:
                        upload = services.access.check(
                            actor,
                            Permission.DOCUMENT_CREATE,
                            self.patient_id,
                            _new_upload(self.patient_id, caregiver, category),
                        )
                        assert bool(upload) == self.model.caregiver_uploads(caregiver, category)

        def _reads(self, actor: Actor, fact: DocumentFacts) -> bool:
            return bool(
                services.access.check(actor, Permission.DOCUMENT_READ, self.patient_id, fact)
            )

        def _expected(self, role: Role, subject: str, document: str, category: str) -> bool:
            if role is Role.PATIENT or subject == AUTHOR:
                return True
            if role is Role.PROFESSIONAL:
                return self.model.doctor_reads(subject, document)
            return self.model.caregiver_reads(subject, document, category)

    run_state_machine_as_test(
        PolicyMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def _new_upload(patient_id: str, caregiver: str, category: str) -> DocumentFacts:
    return DocumentFacts(
        patient_id=patient_id,
        author_kind="caregiver",
        author_id=caregiver,
        security_labels=frozenset(),
        status="current",
        type_code="http://loinc.org|11502-2",
        category_code=f"urn:test|{category}",
    )
