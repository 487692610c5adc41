"""A search filters in its query what the decision function would refuse: the filter that
``policy.readable`` builds, evaluated in Python or run as SQL by PostgreSQL, admits
exactly the documents ``decide`` lets the reader read, for random readers, policies,
matrices and documents."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, insert, select, text

from vault.access import filters
from vault.access.matrix import AuthorizationMatrix, default_matrix, parse_matrix
from vault.access.permissions import Permission
from vault.access.policy import Actor, DocumentFacts, decide, readable
from vault.access.state import (
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTATIVES,
    MASKED,
    Entry,
    EntryKind,
    PatientPolicy,
)
from vault.documents.repository import labels_text, visible_clause
from vault.identity.principal import Principal, Role
from vault.identity.scopes import DEFAULT_SCOPES, parse_scopes
from vault.models import Document, Patient
from vault.services import Services

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PATIENT = "patient-1"
PROFESSIONALS = ("810000000001", "810000000002", "810000000003")
ACCOUNTS = ("aidant", "other", "parent")
PROXIES = ("ins:parent", "ins:other", *(f"caregiver:{account}" for account in ACCOUNTS))
PROFESSIONS = ("10", "40", "60", "21", "99")
TOKENS = (
    "*",
    "11502-2",
    "http://loinc.org|42348-3",
    "11526-1",
    "urn:other|42348-3",
    "A_B",
    "10",
    "11",
    "urn:x|11",
)
TYPE_CODES = (
    "http://loinc.org|11502-2",
    "http://loinc.org|42348-3",
    "urn:other|42348-3",
    "11526-1",
    "urn:x|AxB",
    None,
)
CATEGORY_CODES = ("urn:oid:1.2.250.1.213.1.1.4.1|10", "urn:x|11", "10", "urn:y|12", None)
LABELS = (MASKED, INVISIBLE_PATIENT, INVISIBLE_REPRESENTATIVES, "N")
AUTHORS = (
    ("patient", PATIENT),
    ("patient", "patient-2"),
    ("professional", PROFESSIONALS[0]),
    ("professional", PROFESSIONALS[1]),
    ("caregiver", "aidant"),
    ("proxy", "ins:parent"),
    ("software", "client-1"),
)
SCOPES = (
    "",
    "patient/DocumentReference.rs",
    "patient/Patient.r",
    "user/Binary.r",
    "system/*.cruds",
    "patient/*.c",
)


def _principal(role: Role, subject: str, scope: str, **kw: str | None) -> Principal:
    return Principal(
        role=role, subject=subject, scopes=parse_scopes(scope or DEFAULT_SCOPES[role.value]), **kw
    )


actors = st.one_of(
    st.builds(
        lambda scope, own, proxy, closed: Actor(
            _principal(Role.PATIENT, "185077512345653", scope),
            own_patient_id=own,
            proxy_key=proxy,
            own_record_closed=closed,
        ),
        st.sampled_from(SCOPES),
        st.sampled_from([PATIENT, "patient-2", None]),
        st.sampled_from(["ins:parent", "ins:other", None]),
        # Their own record closed (docs/lifecycle.md), as the actor says for a patient.
        st.booleans(),
    ),
    st.builds(
        lambda scope, account: Actor(
            _principal(Role.CAREGIVER, account, scope), proxy_key=f"caregiver:{account}"
        ),
        st.sampled_from(SCOPES),
        st.sampled_from(ACCOUNTS),
    ),
    st.builds(
        lambda scope, idnps, profession: Actor(
            _principal(Role.PROFESSIONAL, idnps, scope, profession=profession)
        ),
        st.sampled_from(SCOPES),
        st.sampled_from(PROFESSIONALS),
        st.sampled_from(PROFESSIONS),
    ),
    st.builds(
        lambda scope, idnps, profession: Actor(
            _principal(Role.SOFTWARE, "client-1", scope, on_behalf_of=idnps, profession=profession)
        ),
        st.sampled_from(SCOPES),
        st.sampled_from([*PROFESSIONALS, None]),
        st.sampled_from(PROFESSIONS),
    ),
    st.builds(
        lambda scope: Actor(_principal(Role.OPERATOR, "ops", scope)), st.sampled_from(SCOPES)
    ),
)

# Entries in force, expired or not yet started.
moments = st.sampled_from(
    [
        (NOW - timedelta(days=1), None),
        (NOW - timedelta(days=2), NOW - timedelta(days=1)),
        (NOW + timedelta(days=1), None),
    ]
)


token_sets = st.sets(st.sampled_from(TOKENS[:6]), max_size=3).map(sorted)
matrices = st.one_of(
    st.just(default_matrix()),
    st.dictionaries(
        st.sampled_from(PROFESSIONS),
        st.fixed_dictionaries({"allow": token_sets, "deny": token_sets}),
        max_size=4,
    ).map(lambda professions: parse_matrix({"professions": professions})),
)


def _identity(actor: Actor) -> str | None:
    """Whom a policy entry names when it is about this reader."""
    return actor.principal.acting_professional or actor.proxy_key


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Actor, PatientPolicy | None, AuthorizationMatrix]:
    """A reader, and a policy whose entries mostly name them: relationships that concern
    the reader are what the rules are about."""
    actor = draw(actors)
    subjects = st.one_of(
        st.just(_identity(actor)), st.sampled_from([*PROFESSIONALS, *PROXIES, None])
    )
    entry = st.builds(
        lambda number, kind, subject, moment, scope, categories: Entry(
            id=f"entry-{number}",
            kind=kind,
            subject=subject,
            starts_at=moment[0],
            expires_at=moment[1],
            scope=scope,
            categories=frozenset(categories),
        ),
        st.integers(0, 10**6),
        st.sampled_from(list(EntryKind)),
        subjects,
        moments,
        st.sampled_from(["read", "read-upload", "samu-regulation", None]),
        st.sets(st.sampled_from(TOKENS), max_size=3),
    )
    found = draw(st.one_of(st.none(), st.lists(entry, max_size=6)))
    # A closed record (docs/lifecycle.md) now and then: nobody reads it.
    closed = draw(st.sampled_from([False, False, False, True]))
    policy = (
        None
        if found is None
        else PatientPolicy(PATIENT, NOW, len(found), tuple(found), closed=closed)
    )
    # A table that names the reader's profession, often: the rules turn on it.
    named = st.fixed_dictionaries({"allow": token_sets, "deny": token_sets}).map(
        lambda rule: parse_matrix({"professions": {actor.principal.profession or "10": rule}})
    )
    return actor, policy, draw(st.one_of(matrices, named))


documents = st.builds(
    lambda author, labels, type_code, category: DocumentFacts(
        patient_id=PATIENT,
        author_kind=author[0],
        author_id=author[1],
        security_labels=frozenset(labels),
        status="current",
        type_code=type_code,
        category_code=category,
    ),
    st.sampled_from(AUTHORS),
    st.sets(st.sampled_from(LABELS)),
    st.sampled_from(TYPE_CODES),
    st.sampled_from(CATEGORY_CODES),
)


def _reads(
    actor: Actor,
    facts: DocumentFacts,
    policy: PatientPolicy | None,
    matrix: AuthorizationMatrix,
) -> bool:
    return decide(
        actor, Permission.DOCUMENT_READ, PATIENT, facts, policy=policy, matrix=matrix
    ).allowed


@settings(max_examples=3000)
@given(scenarios(), documents)
def test_the_filter_admits_exactly_what_the_decision_lets_the_reader_read(
    scenario: tuple[Actor, PatientPolicy | None, AuthorizationMatrix], facts: DocumentFacts
) -> None:
    actor, policy, matrix = scenario
    visible = readable(actor, PATIENT, policy=policy, matrix=matrix)

    assert filters.evaluate(visible, facts) == _reads(actor, facts, policy, matrix)


def test_a_reader_refused_everything_gets_the_empty_filter() -> None:
    operator = Actor(_principal(Role.OPERATOR, "ops", ""))
    stranger = Actor(_principal(Role.CAREGIVER, "nobody", ""), proxy_key="caregiver:nobody")

    assert readable(operator, PATIENT) == filters.NOTHING
    assert readable(stranger, PATIENT) == filters.NOTHING


def test_a_closed_record_is_read_by_nobody() -> None:
    """Closed, the record is refused to its patient, their treating doctor and their
    caregiver alike, by the filter as by the decision."""
    patient = Actor(
        _principal(Role.PATIENT, "185077512345653", ""),
        own_patient_id=PATIENT,
        own_record_closed=True,
    )
    doctor = Actor(_principal(Role.PROFESSIONAL, PROFESSIONALS[0], "", profession="10"))
    carer = Actor(_principal(Role.CAREGIVER, "aidant", ""), proxy_key="caregiver:aidant")
    entries = (
        Entry("entry-1", EntryKind.TREATING_DOCTOR, PROFESSIONALS[0], NOW - timedelta(days=1)),
        Entry(
            "entry-2",
            EntryKind.DELEGATION,
            "caregiver:aidant",
            NOW - timedelta(days=1),
            categories=frozenset({"*"}),
        ),
    )
    closed = PatientPolicy(PATIENT, NOW, 2, entries, closed=True)
    document = DocumentFacts(PATIENT, "professional", PROFESSIONALS[1], frozenset(), "current")

    assert readable(patient, PATIENT) == filters.NOTHING
    assert not _reads(patient, document, None, default_matrix())
    for reader in (doctor, carer):
        assert readable(reader, PATIENT, policy=closed) == filters.NOTHING
        assert not _reads(reader, document, closed, default_matrix())
        opened = PatientPolicy(PATIENT, NOW, 2, entries)
        assert _reads(reader, document, opened, default_matrix())


# -- the same, run by PostgreSQL -------------------------------------------------------------

# Every combination of the facts a decision reads, once each.
EVERY_DOCUMENT = [
    DocumentFacts(
        patient_id=PATIENT,
        author_kind=author[0],
        author_id=author[1],
        security_labels=frozenset(labels),
        status="current",
        type_code=type_code,
        category_code=category,
    )
    for author, labels, type_code, category in itertools.product(
        AUTHORS,
        [
            frozenset(chosen)
            for size in range(len(LABELS) + 1)
            for chosen in itertools.combinations(LABELS, size)
        ],
        TYPE_CODES,
        CATEGORY_CODES,
    )
]


@pytest.fixture(scope="module")
def stored(session_services: Services) -> Iterator[Connection]:
    """EVERY_DOCUMENT in one patient's record, inside a transaction rolled back at the end;
    document ``n`` has the id ``doc-n``."""
    with session_services.engine.connect() as connection, connection.begin() as transaction:
        connection.execute(
            insert(Patient).values(
                id=PATIENT,
                ins_index=b"readable-filter-test",
                resource_ciphertext=b"-",
                resource_dek=b"-",
                kek_id="-",
            )
        )
        connection.execute(
            insert(Document),
            [
                {
                    "id": f"doc-{number}",
                    "patient_id": PATIENT,
                    "master_identifier": f"urn:test:{number}",
                    "status": facts.status,
                    "type_code": facts.type_code,
                    "category_code": facts.category_code,
                    "security_labels": labels_text(facts.security_labels),
                    "author_kind": facts.author_kind,
                    "author_id": facts.author_id,
                    "content_fingerprint": b"-",
                }
                for number, facts in enumerate(EVERY_DOCUMENT)
            ],
        )
        connection.execute(text("ANALYZE documents"))
        yield connection
        transaction.rollback()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scenarios())
def test_postgresql_returns_exactly_the_documents_the_decision_lets_the_reader_read(
    stored: Connection, scenario: tuple[Actor, PatientPolicy | None, AuthorizationMatrix]
) -> None:
    actor, policy, matrix = scenario
    visible = readable(actor, PATIENT, policy=policy, matrix=matrix)
    query = select(Document.id).where(Document.patient_id == PATIENT, visible_clause(visible))

    returned = set(stored.scalars(query))

    expected = {
        f"doc-{number}"
        for number, facts in enumerate(EVERY_DOCUMENT)
        if _reads(actor, facts, policy, matrix)
    }
    assert returned == expected


def test_a_document_without_a_type_is_shown_where_the_matrix_allows_every_type(
    stored: Connection,
) -> None:
    """A NULL code is matched by no token but ``*``: a deny list does not hide it, in SQL
    as in Python."""
    doctor = Actor(_principal(Role.PROFESSIONAL, PROFESSIONALS[2], "", profession="10"))
    treating = Entry("entry-1", EntryKind.TREATING_DOCTOR, PROFESSIONALS[2], NOW)
    policy = PatientPolicy(PATIENT, NOW, 1, (treating,))
    matrix = parse_matrix({"professions": {"10": {"allow": ["*"], "deny": ["11526-1"]}}})
    visible = readable(doctor, PATIENT, policy=policy, matrix=matrix)
    untyped = select(Document.id).where(
        Document.patient_id == PATIENT, Document.type_code.is_(None), visible_clause(visible)
    )

    shown = set(stored.scalars(untyped))

    assert len(shown) == len([facts for facts in EVERY_DOCUMENT if facts.type_code is None])
