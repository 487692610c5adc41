"""The decision function on its own: pure, so each rule is checked directly, and the rules
that must hold whatever the policy are checked over random policies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.access.matrix import default_matrix, load_matrix, parse_matrix
from vault.access.permissions import Permission
from vault.access.policy import Actor, Decision, DocumentFacts, decide, needs_policy
from vault.access.state import (
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTATIVES,
    MASKED,
    EmergencyMode,
    Entry,
    EntryKind,
    MetadataChange,
    PatientPolicy,
    PolicyChange,
    ProtectionMeasure,
    RepresentationGrounds,
    Verb,
)
from vault.errors import VaultError
from vault.identity.principal import Principal, Role
from vault.identity.scopes import DEFAULT_SCOPES, parse_scopes

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PATIENT = "patient-1"
DOCTOR = "810000000001"
AUTHOR = "810000000002"
LAB = "http://loinc.org|11502-2"
DIRECTIVES = "http://loinc.org|42348-3"
REPORTS = "urn:oid:1.2.250.1.213.1.1.4.1|10"


def principal(role: Role, subject: str, profession: str | None = None, scope: str = "") -> Actor:
    return Principal(
        role=role,
        subject=subject,
        scopes=parse_scopes(scope or DEFAULT_SCOPES[role.value]),
        profession=profession,
    )


def patient(own: str | None = PATIENT) -> Actor:
    return Actor(principal(Role.PATIENT, "185077512345653"), own_patient_id=own, proxy_key="ins:p")


def professional(idnps: str = DOCTOR, profession: str = "10") -> Actor:
    return Actor(principal(Role.PROFESSIONAL, idnps, profession))


def caregiver(account: str = "aidant") -> Actor:
    return Actor(principal(Role.CAREGIVER, account), proxy_key=f"caregiver:{account}")


def document(
    labels: tuple[str, ...] = (),
    type_code: str = LAB,
    author: tuple[str, str] = ("professional", AUTHOR),
) -> DocumentFacts:
    return DocumentFacts(
        patient_id=PATIENT,
        author_kind=author[0],
        author_id=author[1],
        security_labels=frozenset(labels),
        status="current",
        type_code=type_code,
        category_code=REPORTS,
    )


def entry(kind: EntryKind, subject: str | None, **kw) -> Entry:
    return Entry(id=f"{kind}-{subject}", kind=kind, subject=subject, starts_at=NOW, **kw)


def policy(*entries: Entry) -> PatientPolicy:
    return PatientPolicy(PATIENT, NOW, len(entries), entries)


def reads(actor: Actor, facts: DocumentFacts, given_policy: PatientPolicy | None = None) -> bool:
    return bool(decide(actor, Permission.DOCUMENT_READ, PATIENT, facts, policy=given_policy))


def change(added=(), removed=(), status=False) -> MetadataChange:
    return MetadataChange(status, frozenset(added), frozenset(removed))


# -- rules, one by one --------------------------------------------------------------------


def test_nothing_is_granted_without_a_rule_that_grants_it():
    assert not reads(professional(), document())
    assert not reads(caregiver(), document())
    assert not reads(patient(own=None), document())
    assert not reads(Actor(principal(Role.OPERATOR, "ops", scope="system/*.cruds")), document())


def test_a_token_never_does_more_than_its_scopes_allow():
    narrow = Actor(principal(Role.PATIENT, "x", scope="patient/Patient.r"), own_patient_id=PATIENT)
    assert not reads(narrow, document())
    assert decide(narrow, Permission.PATIENT_READ, PATIENT).allowed


def test_a_policy_or_document_of_another_patient_decides_nothing():
    other = PatientPolicy("patient-2", NOW, 1, (entry(EntryKind.CARE_TEAM, DOCTOR),))
    assert not reads(professional(), document(), other)
    assert not reads(patient(own="patient-2"), document())


def test_entries_count_only_while_in_force():
    later = entry(EntryKind.CARE_TEAM, DOCTOR, expires_at=NOW + timedelta(days=1))
    assert reads(professional(), document(), policy(later))
    expired = entry(EntryKind.CARE_TEAM, DOCTOR, expires_at=NOW)
    assert not reads(professional(), document(), policy(expired))
    future = Entry("f", EntryKind.CARE_TEAM, DOCTOR, starts_at=NOW + timedelta(seconds=1))
    assert not reads(professional(), document(), policy(future))


def test_the_matrix_limits_what_a_profession_reads_even_in_the_care_team():
    dentist = professional(DOCTOR, profession="40")
    team = policy(entry(EntryKind.CARE_TEAM, DOCTOR))
    assert reads(dentist, document(type_code=LAB), team)
    assert not reads(dentist, document(type_code=DIRECTIVES), team)
    assert not reads(professional(DOCTOR, profession="999"), document(), team)
    # Authors always read what they wrote.
    assert reads(professional(AUTHOR, profession="999"), document(type_code=DIRECTIVES))


def test_who_may_change_each_visibility_label():
    def may(actor: Actor, facts: DocumentFacts, what: MetadataChange, given=None) -> bool:
        return decide(
            actor, Permission.DOCUMENT_UPDATE, PATIENT, facts, policy=given, change=what
        ).allowed

    author = professional(AUTHOR)
    representative = caregiver("parent")
    minor = policy(entry(EntryKind.REPRESENTATIVE, "caregiver:parent"))
    assert may(patient(), document(), change(added={MASKED}))
    assert may(patient(), document((MASKED,)), change(removed={MASKED}))
    assert not may(patient(), document(), change(status=True))
    assert may(author, document(), change(status=True))
    assert may(author, document(), change(added={MASKED}))
    assert not may(author, document((MASKED,)), change(removed={MASKED}))
    assert may(author, document((INVISIBLE_PATIENT,)), change(removed={INVISIBLE_PATIENT}))
    assert not may(patient(), document((INVISIBLE_PATIENT,)), change(removed={INVISIBLE_PATIENT}))
    assert may(patient(), document(), change(added={INVISIBLE_REPRESENTATIVES}))
    assert may(representative, document(), change(added={MASKED}), minor)
    assert not may(representative, document(), change(added={INVISIBLE_REPRESENTATIVES}), minor)
    # No change described is a change of anything: the author's alone.
    assert not may(patient(), document(), None)


def test_samu_regulation_is_declared_by_doctors_and_refused_after_an_opt_out():
    def declares(actor: Actor, mode: EmergencyMode, given=None) -> bool:
        what = PolicyChange(EntryKind.EMERGENCY, Verb.ADD, "e", mode)
        return decide(
            actor, Permission.EMERGENCY_DECLARE, PATIENT, policy=given, change=what
        ).allowed

    assert declares(professional(), EmergencyMode.SAMU)
    assert not declares(professional(profession="60"), EmergencyMode.SAMU)
    assert declares(professional(profession="60"), EmergencyMode.BREAK_GLASS)
    assert not declares(
        professional(), EmergencyMode.BREAK_GLASS, policy(entry(EntryKind.EMERGENCY_OPT_OUT, None))
    )


def test_operators_only_register_legal_representatives():
    operator = Actor(principal(Role.OPERATOR, "ops", scope="system/*.cruds"))
    for permission in Permission:
        for kind in EntryKind:
            # Grounds established (a minor's record), as the service establishes them.
            what = PolicyChange(kind, Verb.ADD, "x", grounds=RepresentationGrounds(minor=True))
            allowed = decide(operator, permission, PATIENT, change=what).allowed
            assert allowed == (
                permission is Permission.POLICY_MANAGE and kind is EntryKind.REPRESENTATIVE
            ), (permission, kind)


def test_a_representation_needs_grounds_and_never_names_who_registers_it():
    operator = Actor(principal(Role.OPERATOR, "ops", scope="system/*.cruds"))

    def registers(grounds: RepresentationGrounds | None) -> Decision:
        change = PolicyChange(EntryKind.REPRESENTATIVE, Verb.ADD, "x", grounds=grounds)
        return decide(operator, Permission.POLICY_MANAGE, PATIENT, change=change)

    assert not registers(None)
    adult = registers(RepresentationGrounds(minor=False))
    assert not adult
    assert adult.unprocessable
    assert registers(RepresentationGrounds(minor=False, measure=ProtectionMeasure.TUTELLE))
    assert not registers(RepresentationGrounds(minor=True, names_requester=True))
    # The patient themself is held to the same grounds.
    own = decide(
        patient(),
        Permission.POLICY_MANAGE,
        PATIENT,
        change=PolicyChange(
            EntryKind.REPRESENTATIVE, Verb.ADD, "x", grounds=RepresentationGrounds(minor=False)
        ),
    )
    assert not own


def test_an_emergency_is_recorded_as_one():
    decision = decide(
        professional(),
        Permission.DOCUMENT_READ,
        PATIENT,
        document(),
        policy=policy(entry(EntryKind.EMERGENCY, DOCTOR, scope="samu-regulation")),
    )
    assert decision.allowed
    assert decision.purpose == "ETREAT"
    assert dict(decision.detail) == {
        "emergency": "true",
        "emergency_access": f"{EntryKind.EMERGENCY}-{DOCTOR}",
        "emergency_mode": "samu-regulation",
    }


# -- the authorization matrix file ------------------------------------------------------------


def test_the_shipped_matrix_loads_and_keeps_dentists_from_advance_directives():
    matrix = default_matrix()
    assert matrix.allows("10", DIRECTIVES)
    assert not matrix.allows("40", DIRECTIVES)
    assert matrix.allows("40", LAB)
    assert not matrix.allows(None, LAB)


def test_an_operator_matrix_replaces_the_defaults(tmp_path):
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps({"professions": {"40": {"allow": ["42348-3"]}}}))
    matrix = load_matrix(path)
    assert matrix.allows("40", DIRECTIVES)
    assert not matrix.allows("10", LAB)


@pytest.mark.parametrize(
    "document_text",
    [
        "[]",
        '{"professions": []}',
        '{"professions": {"10": {"allow": "*"}}}',
        '{"professions": {"10": {"allow": ["*"], "except": []}}}',
        "not json",
    ],
)
def test_a_malformed_matrix_is_refused_at_start_up(tmp_path, document_text):
    path = tmp_path / "matrix.json"
    path.write_text(document_text)
    with pytest.raises(VaultError):
        load_matrix(path)


def test_parse_matrix_reads_deny_over_allow():
    matrix = parse_matrix({"professions": {"21": {"allow": ["*"], "deny": [LAB]}}})
    assert not matrix.allows("21", LAB)
    assert matrix.allows("21", DIRECTIVES)


# -- rules that hold whatever the policy -------------------------------------------------------

professionals = st.sampled_from([DOCTOR, AUTHOR, "810000000003"])
entries = st.one_of(
    st.builds(
        entry,
        st.sampled_from(
            [
                EntryKind.TREATING_DOCTOR,
                EntryKind.CARE_TEAM,
                EntryKind.POINT_OF_CARE,
                EntryKind.BLOCK,
                EntryKind.EMERGENCY,
            ]
        ),
        professionals,
    ),
    st.builds(
        lambda who, scope, cats: entry(
            EntryKind.DELEGATION, who, scope=scope, categories=frozenset(cats)
        ),
        st.sampled_from(["caregiver:aidant", "caregiver:other"]),
        st.sampled_from(["read", "read-upload"]),
        st.sets(st.sampled_from(["*", "10", "11"]), min_size=1),
    ),
    st.builds(lambda: entry(EntryKind.EMERGENCY_OPT_OUT, None)),
    st.builds(lambda who: entry(EntryKind.REPRESENTATIVE, who), st.just("caregiver:parent")),
)
policies = st.lists(entries, max_size=8).map(lambda found: policy(*found))
documents = st.builds(
    document,
    st.sets(st.sampled_from([MASKED, INVISIBLE_PATIENT, INVISIBLE_REPRESENTATIVES])).map(tuple),
    st.sampled_from([LAB, DIRECTIVES]),
)
actors = st.one_of(
    st.builds(professional, professionals, st.sampled_from(["10", "40", "60"])),
    st.builds(caregiver, st.sampled_from(["aidant", "other", "parent"])),
    st.just(patient()),
)
permissions = st.sampled_from(list(Permission))


@given(professionals, policies, documents, permissions)
def test_a_blocked_professional_is_refused_everything(idnps, given_policy, facts, permission):
    blocked = policy(*given_policy.entries, entry(EntryKind.BLOCK, idnps))
    decision = decide(professional(idnps), permission, PATIENT, facts, policy=blocked)
    assert not decision.allowed


@given(policies, documents, st.sampled_from(["aidant", "other"]))
def test_a_caregiver_never_sees_a_masked_or_hidden_document(given_policy, facts, account):
    if facts.security_labels:
        assert not reads(caregiver(account), facts, given_policy)


@given(actors, policies, documents)
def test_only_the_patient_side_and_the_author_see_an_invisible_to_patient_document_as_patient(
    actor, given_policy, facts
):
    """INVISIBLE_PATIENT hides a document from the patient and everyone acting for them."""
    if INVISIBLE_PATIENT in facts.security_labels and actor.principal.role is not Role.PROFESSIONAL:
        assert not reads(actor, facts, given_policy)


@given(actors, policies, documents, permissions)
def test_no_decision_grants_what_the_scopes_do_not(actor, given_policy, facts, permission):
    empty = Actor(
        Principal(role=actor.principal.role, subject=actor.principal.subject, scopes=()),
        actor.own_patient_id,
        actor.proxy_key,
    )
    assert not decide(empty, permission, PATIENT, facts, policy=given_policy).allowed


@given(professionals, policies, documents)
def test_a_masked_document_reaches_only_its_author_and_the_treating_doctor_among_professionals(
    idnps, given_policy, facts
):
    if MASKED in facts.security_labels and reads(professional(idnps), facts, given_policy):
        assert idnps == AUTHOR or given_policy.in_force(EntryKind.TREATING_DOCTOR, idnps)


policy_changes = st.one_of(
    st.none(),
    st.builds(PolicyChange, st.sampled_from(list(EntryKind)), st.sampled_from(list(Verb))),
    st.builds(change, st.just((MASKED,)), st.just(()), st.booleans()),
)


@given(actors, policies, st.one_of(st.none(), documents), permissions, policy_changes)
def test_a_request_decided_without_the_policy_is_decided_the_same_with_any_policy(
    actor, given_policy, facts, permission, asked
):
    """What lets AccessService skip loading the policy where needs_policy says so."""
    if needs_policy(actor, PATIENT):
        return
    with_it = decide(actor, permission, PATIENT, facts, policy=given_policy, change=asked)
    assert with_it == decide(actor, permission, PATIENT, facts, policy=None, change=asked)


def test_only_a_patient_on_their_own_record_is_decided_without_the_policy():
    assert not needs_policy(patient(), PATIENT)
    assert needs_policy(patient(own="another-record"), PATIENT)
    assert needs_policy(patient(own=None), PATIENT)
    assert needs_policy(professional(), PATIENT)
    assert needs_policy(caregiver(), PATIENT)
