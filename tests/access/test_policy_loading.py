"""Loading a patient's policy, which every decision about their record starts with: one
statement, holding exactly the entries in force and the policy's version."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import event, or_, select

from tests.access.policy_support import add_professional, grant, policy_url
from tests.factories import OTHER_DOCTOR, create_patient
from vault.access.repository import entry_of, load_policy
from vault.models import AccessPolicy, AccessPolicyEntry


@contextmanager
def counted(services) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(services.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(services.engine, "before_cursor_execute", count)


def test_a_patient_without_a_policy_loads_as_version_0_with_nothing_granted(
    client, tokens, services
):
    patient_id, _ = create_patient(client, tokens, 1)
    now = datetime.now(UTC)
    with services.session_factory() as session, counted(services) as statements:
        loaded = load_policy(session, patient_id, now)
    assert (loaded.patient_id, loaded.at, loaded.version, loaded.entries) == (
        patient_id,
        now,
        0,
        (),
    )
    assert len(statements) == 1


def test_a_policy_loads_in_one_statement_with_exactly_the_entries_in_force(
    client, tokens, services
):
    patient_id, ins_value = create_patient(client, tokens, 1)
    own = tokens.patient(ins_value)
    for where, idnps in (
        ("/treating-doctor", "810000000001"),
        ("/care-team", OTHER_DOCTOR),
        ("/care-team", "810000000003"),
        ("/blocks", "810000000004"),
    ):
        assert add_professional(client, own, patient_id, where, idnps).status_code < 300
    assert grant(client, own, patient_id, "aidant", categories=("10", "11")).status_code < 300
    ended = client.delete(policy_url(patient_id, "/care-team/810000000003"), headers=own)
    assert ended.status_code < 300, ended.text
    now = datetime.now(UTC)

    with services.session_factory() as session:
        with counted(services) as statements:
            loaded = load_policy(session, patient_id, now)
        version = session.scalar(
            select(AccessPolicy.version).where(AccessPolicy.patient_id == patient_id)
        )
        in_force = session.scalars(
            select(AccessPolicyEntry).where(
                AccessPolicyEntry.patient_id == patient_id,
                AccessPolicyEntry.ended_at.is_(None),
                or_(AccessPolicyEntry.expires_at.is_(None), AccessPolicyEntry.expires_at > now),
            )
        ).all()
    assert len(statements) == 1
    assert loaded.version == version
    assert version is not None
    assert version > 0
    assert sorted(loaded.entries, key=lambda e: e.id) == sorted(
        (entry_of(row) for row in in_force), key=lambda e: e.id
    )
    assert {entry.kind.value for entry in loaded.entries} == {
        "treating-doctor",
        "care-team",
        "block",
        "delegation",
    }
    assert len(loaded.entries) == 4
