"""One date-time column type for every backend: whatever offset a value arrives with, the
database keeps the instant and gives back an aware UTC datetime, and comparisons in SQL
follow instants, on SQLite as on PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from vault.db import unit_of_work
from vault.models import UsedClientAssertion

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
instants = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=offsets,
)


def _store(services, expires_at: datetime) -> str:
    jti = str(uuid.uuid4())
    with unit_of_work(services.session_factory) as session:
        session.add(UsedClientAssertion(client_id="type-test", jti=jti, expires_at=expires_at))
    return jti


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=instants)
def test_any_offset_is_read_back_as_the_same_instant_in_utc(services, value):
    jti = _store(services, value)
    with unit_of_work(services.session_factory) as session:
        kept = session.scalars(
            select(UsedClientAssertion.expires_at).where(UsedClientAssertion.jti == jti)
        ).one()
    assert kept == value
    assert kept.tzinfo is not None
    assert kept.utcoffset() == timedelta(0)


def test_comparisons_in_sql_follow_instants_not_wall_clock_digits(services):
    # 10:00+02:00 is 08:00 UTC: before 09:00 UTC although its digits read later.
    early = _store(services, datetime(2030, 6, 1, 10, 0, tzinfo=timezone(timedelta(hours=2))))
    late = _store(services, datetime(2030, 6, 1, 9, 30, tzinfo=UTC))
    cut = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
    with unit_of_work(services.session_factory) as session:
        after = set(
            session.scalars(
                select(UsedClientAssertion.jti).where(UsedClientAssertion.expires_at > cut)
            )
        )
    assert late in after
    assert early not in after


def test_a_naive_value_is_taken_as_utc(services):
    jti = _store(services, datetime(2030, 6, 1, 8, 0))
    with unit_of_work(services.session_factory) as session:
        kept = session.scalars(
            select(UsedClientAssertion.expires_at).where(UsedClientAssertion.jti == jti)
        ).one()
    assert kept == datetime(2030, 6, 1, 8, 0, tzinfo=UTC)
