"""The only place that builds SQL for access policies and the patient's notification outbox."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Table, Text, and_, bindparam, func, literal_column, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement

from vault.access.state import Entry, EntryKind, PatientPolicy
from vault.models import (
    AccessPolicy,
    AccessPolicyEntry,
    AuditNotification,
    CaregiverInvitation,
    InvitationCode,
    PatientIns,
    RecordLifecycle,
)
from vault.models.base import utcnow


class PolicySnapshots:
    """One request's view of patients' policies: each loaded once, on first use, and
    dropped when the request itself changes it."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._loaded: dict[str, PatientPolicy] = {}

    def get(self, patient_id: str) -> PatientPolicy:
        policy = self._loaded.get(patient_id)
        if policy is None:
            policy = load_policy(self._session, patient_id, utcnow())
            self._loaded[patient_id] = policy
        return policy

    def forget(self, patient_id: str) -> None:
        self._loaded.pop(patient_id, None)


_POLICIES = cast(Table, AccessPolicy.__table__)
_ENTRIES = cast(Table, AccessPolicyEntry.__table__)
_LIFECYCLES = cast(Table, RecordLifecycle.__table__)
# Whether the record is closed or deleted (docs/lifecycle.md): a record never closed has no
# lifecycle row.
_CLOSED = (
    select(_LIFECYCLES.c.status)
    .where(_LIFECYCLES.c.patient_id == bindparam("patient_id"), _LIFECYCLES.c.status != "open")
    .scalar_subquery()
)
# Every request reads its patient's policy: one statement, built once. The version comes
# with each entry row; a lone row of NULL entry columns stands for a policy without entries.
_POLICY_NOW = select(
    select(_POLICIES.c.version)
    .where(_POLICIES.c.patient_id == bindparam("patient_id"))
    .scalar_subquery()
    .label("version"),
    _CLOSED.label("closed"),
    _ENTRIES.c.id,
    _ENTRIES.c.kind,
    _ENTRIES.c.subject,
    _ENTRIES.c.issuer,
    _ENTRIES.c.starts_at,
    _ENTRIES.c.expires_at,
    _ENTRIES.c.scope,
    _ENTRIES.c.categories,
).select_from(
    select(literal_column("1").label("one"))
    .subquery("policy")
    .outerjoin(
        _ENTRIES,
        and_(
            _ENTRIES.c.patient_id == bindparam("patient_id"),
            _ENTRIES.c.ended_at.is_(None),
            or_(_ENTRIES.c.expires_at.is_(None), _ENTRIES.c.expires_at > bindparam("at")),
        ),
    )
)


_PATIENT_INS = cast(Table, PatientIns.__table__)
# Core, on the session's connection: every patient's request runs it, and the ORM's
# execution of this small query cost more than the query itself. The reference table
# patient_ins finds a record by INS index (docs/scaling.md); it holds a row for every
# record, written with it.
_OWN_RECORD = select(
    _PATIENT_INS.c.patient_id,
    select(_LIFECYCLES.c.status)
    .where(_LIFECYCLES.c.patient_id == _PATIENT_INS.c.patient_id, _LIFECYCLES.c.status != "open")
    .scalar_subquery()
    .label("closed"),
).where(_PATIENT_INS.c.ins_index == bindparam("ins_index"))


def own_record_state(session: Session, ins_index: bytes) -> tuple[str | None, bool]:
    """The record of the patient with this INS index, if they have one, and whether they
    closed it; one this transaction is adding is found too (flushed first, as the ORM's
    autoflush would)."""
    if session.autoflush and (session.new or session.dirty or session.deleted):
        session.flush()
    row = session.connection().execute(_OWN_RECORD, {"ins_index": ins_index}).first()
    if row is None:
        return None, False
    return row.patient_id, row.closed is not None


def load_policy(session: Session, patient_id: str, at: datetime) -> PatientPolicy:
    rows = session.execute(_POLICY_NOW, {"patient_id": patient_id, "at": at}).all()
    version = rows[0].version if rows else None
    closed = bool(rows) and rows[0].closed is not None
    entries = tuple(entry_of(row) for row in rows if row.id is not None)
    return PatientPolicy(patient_id, at, version or 0, entries, closed=closed)


def entry_of(row: Row[*tuple[Any, ...]]) -> Entry:
    return Entry(
        id=row.id,
        kind=EntryKind(row.kind),
        subject=row.subject,
        issuer=row.issuer,
        starts_at=row.starts_at,
        expires_at=row.expires_at,
        scope=row.scope,
        categories=frozenset(row.categories or ()),
    )


def next_version(session: Session, patient_id: str, now: datetime) -> int:
    """Claim the policy's next version. The UPDATE takes the row lock first, so concurrent
    changes to one patient's policy queue instead of sharing a version."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(AccessPolicy)
        .values(patient_id=patient_id, version=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["patient_id"])
    )
    session.execute(
        update(AccessPolicy)
        .where(AccessPolicy.patient_id == patient_id)
        .values(version=AccessPolicy.version + 1, updated_at=now)
    )
    version = session.scalar(
        select(AccessPolicy.version).where(AccessPolicy.patient_id == patient_id)
    )
    return int(version or 0)


def _vouched_by(issuer: str | None) -> ColumnElement[bool]:
    column = AccessPolicyEntry.issuer
    return column.is_(None) if issuer is None else column == issuer


def open_entries(
    session: Session,
    patient_id: str,
    kind: EntryKind,
    subject: str | None = None,
    at: datetime | None = None,
    issuer: str | None = None,
) -> Sequence[AccessPolicyEntry]:
    """Entries not ended (and, given ``at``, not expired), oldest first; given a subject,
    those naming it as vouched for by ``issuer`` (None: a national identifier)."""
    query = select(AccessPolicyEntry).where(
        AccessPolicyEntry.patient_id == patient_id,
        AccessPolicyEntry.kind == kind.value,
        AccessPolicyEntry.ended_at.is_(None),
    )
    if subject is not None:
        query = query.where(AccessPolicyEntry.subject == subject, _vouched_by(issuer))
    if at is not None:
        query = query.where(
            or_(AccessPolicyEntry.expires_at.is_(None), AccessPolicyEntry.expires_at > at)
        )
    return session.scalars(query.order_by(AccessPolicyEntry.version_added)).all()


def entry(session: Session, patient_id: str, entry_id: str) -> AccessPolicyEntry | None:
    return session.get(AccessPolicyEntry, {"patient_id": patient_id, "id": entry_id})


def all_entries(session: Session, patient_id: str) -> Sequence[AccessPolicyEntry]:
    return session.scalars(
        select(AccessPolicyEntry)
        .where(AccessPolicyEntry.patient_id == patient_id)
        .order_by(AccessPolicyEntry.version_added, AccessPolicyEntry.id)
    ).all()


def entries_naming(
    session: Session,
    subject: str,
    issuer: str | None,
    kinds: Iterable[EntryKind],
    at: datetime,
) -> Sequence[AccessPolicyEntry]:
    """Relationships in force that name this grantee (as vouched for by this issuer),
    across patients."""
    return session.scalars(
        select(AccessPolicyEntry)
        .where(
            AccessPolicyEntry.subject == subject,
            _vouched_by(issuer),
            AccessPolicyEntry.kind.in_([kind.value for kind in kinds]),
            AccessPolicyEntry.ended_at.is_(None),
            or_(AccessPolicyEntry.expires_at.is_(None), AccessPolicyEntry.expires_at > at),
        )
        .order_by(AccessPolicyEntry.starts_at)
    ).all()


def invitation_by_code_hash(session: Session, code_hash: bytes) -> CaregiverInvitation | None:
    """Locked, so that two acceptances of one code queue and the second finds it used. The
    code's patient and invitation come from the reference table invitation_codes."""
    code = session.get(InvitationCode, code_hash)
    if code is None:
        return None
    return session.get(
        CaregiverInvitation,
        {"patient_id": code.patient_id, "id": code.invitation_id},
        with_for_update=True,
    )


def invitation(session: Session, patient_id: str, invitation_id: str) -> CaregiverInvitation | None:
    """One of the patient's invitations, locked like an acceptance locks it: a withdrawal
    and an acceptance of one invitation queue, and the second finds what the first did."""
    return session.get(
        CaregiverInvitation,
        {"patient_id": patient_id, "id": invitation_id},
        with_for_update=True,
    )


def add_invitation_code(session: Session, invitation: CaregiverInvitation) -> None:
    """An invitation's row in the reference table, in the invitation's transaction."""
    session.add(
        InvitationCode(
            code_hash=invitation.code_hash,
            patient_id=invitation.patient_id,
            invitation_id=invitation.id,
        )
    )


def invitations_of(session: Session, patient_id: str) -> Sequence[CaregiverInvitation]:
    return session.scalars(
        select(CaregiverInvitation)
        .where(CaregiverInvitation.patient_id == patient_id)
        .order_by(CaregiverInvitation.created_at.desc(), CaregiverInvitation.id)
    ).all()


def delegations_of(session: Session, patient_id: str) -> Sequence[AccessPolicyEntry]:
    """Every delegation ever granted, ended and expired ones included, newest first."""
    return session.scalars(
        select(AccessPolicyEntry)
        .where(
            AccessPolicyEntry.patient_id == patient_id,
            AccessPolicyEntry.kind == EntryKind.DELEGATION.value,
        )
        .order_by(AccessPolicyEntry.version_added.desc(), AccessPolicyEntry.id)
    ).all()


def add(session: Session, row: AccessPolicyEntry | CaregiverInvitation) -> None:
    session.add(row)
    session.flush()


def enqueue_notifications(session: Session, rows: list[dict[str, Any]]) -> None:
    """Outbox rows built by ``notifications.addressed_rows``, each skipped when one with its
    key exists."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(outbox_insert(insert), rows)


_OUTBOX = cast(Table, AuditNotification.__table__)
# The columns vault/access/notifications.py fills, each bound as ``n_<column>``.
_OUTBOX_COLUMNS = (
    "created_at",
    "patient_id",
    "kind",
    "dedupe_key",
    "audit_entry_id",
    "actor_role",
    "actor_id",
    "recipient",
    "status",
    "attempts",
    "next_attempt_at",
)


def outbox_insert(insert: Callable[[Any], Any]) -> Insert:
    """The outbox row's insert, skipped when one with its key exists: ``insert`` is the
    dialect's (``postgresql.insert`` or ``sqlite.insert``); parameters from
    ``notifications.outbox_row`` or ``notifications.addressed_rows``."""
    built: postgresql.Insert | sqlite.Insert = insert(_OUTBOX)
    return built.values(
        {name: bindparam(f"n_{name}") for name in _OUTBOX_COLUMNS}
    ).on_conflict_do_nothing(index_elements=["patient_id", "dedupe_key"])


def outbox_insert_many() -> Insert:
    """PostgreSQL: many outbox rows in one statement, bound as one JSON array ``outbox``
    (``outbox_json``). The rows go in in the order given, so that of two with one key the
    first is kept, as when they are inserted one by one."""
    rows = func.json_populate_recordset(
        literal_column(f"NULL::{_OUTBOX.name}"), sql_cast(bindparam("outbox", type_=Text), JSON)
    ).table_valued(*_OUTBOX_COLUMNS, with_ordinality="ordinality")
    return (
        postgresql.insert(_OUTBOX)
        .from_select(
            list(_OUTBOX_COLUMNS),
            select(*(rows.c[name] for name in _OUTBOX_COLUMNS)).order_by(rows.c.ordinality),
        )
        .on_conflict_do_nothing(index_elements=["patient_id", "dedupe_key"])
    )


def outbox_json(rows: list[dict[str, Any]]) -> str:
    """``outbox_insert_many``'s parameter: rows of ``notifications.outbox_row``."""
    return json.dumps(
        [
            {
                name: value.isoformat() if isinstance(value, datetime) else value
                for name, value in ((key.removeprefix("n_"), value) for key, value in row.items())
            }
            for row in rows
        ]
    )
