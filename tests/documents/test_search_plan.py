"""A search reads what its page returns, however long the record: on a patient with ten
thousand documents, PostgreSQL's plan for a first page and for a page deep in the record,
for each kind of reader (whose access rules are in the query), touches a bounded number of
rows, through an index, with nothing sorted or hashed whole.

PostgreSQL only: the plan is PostgreSQL's (the SQLite pass deselects this marker).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, insert, text
from sqlalchemy.dialects import postgresql

from vault.access.matrix import default_matrix
from vault.access.policy import Actor, readable
from vault.access.state import (
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTATIVES,
    MASKED,
    Entry,
    EntryKind,
    PatientPolicy,
)
from vault.documents.repository import SearchCriteria, candidates_query, labels_text
from vault.identity.principal import Principal, Role
from vault.identity.scopes import DEFAULT_SCOPES, parse_scopes
from vault.models import Binary, Document, DocumentVersion, Patient
from vault.services import Services

pytestmark = pytest.mark.postgres_only

LONG = "patient-long"
RECORD = 10_000
OTHERS = 200
PAGE = 20
NOW = datetime(2026, 12, 1, tzinfo=UTC)
AUTHOR = "810000000001"
COLLEAGUE = "810000000002"
STRANGER = "810000000009"
TYPES = (
    "http://loinc.org|11502-2",
    "http://loinc.org|11488-4",
    "http://loinc.org|42348-3",
    "http://loinc.org|18748-4",
    "http://loinc.org|11526-1",
)
CATEGORIES = (
    "urn:oid:1.2.250.1.213.1.1.4.1|10",
    "urn:oid:1.2.250.1.213.1.1.4.1|11",
)
# Every row a node may produce or throw away on a page of PAGE: the page, the one more
# that says a next page is due, and what the reader may not see among those scanned (a
# few percent of this record is masked or hidden; 1 in 20 of the rows scanned, counted
# generously).
BOUND = 4 * (PAGE + 1)


def _documents(rng: random.Random, patient_id: str, count: int) -> Iterator[dict[str, Any]]:
    for number in range(count):
        roll = rng.random()
        labels = (
            {MASKED}
            if roll < 0.03
            else {INVISIBLE_PATIENT}
            if roll < 0.04
            else {INVISIBLE_REPRESENTATIVES}
            if roll < 0.05
            else set()
        )
        author = ("patient", patient_id) if number % 10 == 0 else ("professional", AUTHOR)
        if number % 10 in (3, 7):
            author = ("professional", COLLEAGUE)
        yield {
            "id": f"{patient_id}-{number}",
            "patient_id": patient_id,
            "master_identifier": f"urn:test:{patient_id}:{number}",
            "status": "current",
            "type_code": TYPES[number % len(TYPES)],
            "category_code": CATEGORIES[number % 7 == 0],
            "security_labels": labels_text(frozenset(labels)),
            "author_kind": author[0],
            "author_id": author[1],
            "content_fingerprint": b"-",
            "created_at": NOW - timedelta(seconds=rng.uniform(0, 5 * 365 * 86400)),
        }


@pytest.fixture(scope="module")
def record(session_services: Services) -> Iterator[Connection]:
    """A record of RECORD documents beside OTHERS records of ten, each document with its
    binary and current version, in a transaction rolled back at the end."""
    rng = random.Random(15)
    with session_services.engine.connect() as connection, connection.begin() as transaction:
        patients = [LONG, *(f"patient-{n}" for n in range(OTHERS))]
        connection.execute(
            insert(Patient),
            [
                {
                    "id": patient_id,
                    "ins_index": patient_id.encode(),
                    "resource_ciphertext": b"-",
                    "resource_dek": b"-",
                    "kek_id": "-",
                }
                for patient_id in patients
            ],
        )
        documents = [
            row
            for patient_id in patients
            for row in _documents(rng, patient_id, RECORD if patient_id == LONG else 10)
        ]
        connection.execute(
            insert(Binary),
            [
                {
                    "id": f"bin-{row['id']}",
                    "document_id": row["id"],
                    "patient_id": row["patient_id"],
                    "content_type": "application/pdf",
                    "size": 1,
                    "blob_key": f"blob-{row['id']}",
                    "segment_size": 65536,
                    "wrapped_dek": b"-",
                    "kek_id": "-",
                }
                for row in documents
            ],
        )
        connection.execute(insert(Document), documents)
        connection.execute(
            insert(DocumentVersion),
            [
                {
                    "document_id": row["id"],
                    "version": 1,
                    "patient_id": row["patient_id"],
                    "status": "current",
                    "security_labels": row["security_labels"],
                    "binary_id": f"bin-{row['id']}",
                    "resource_ciphertext": b"-",
                    "resource_dek": b"-",
                    "kek_id": "-",
                    "created_by_role": row["author_kind"],
                    "created_by": row["author_id"],
                }
                for row in documents
            ],
        )
        connection.execute(text("ANALYZE documents"))
        connection.execute(text("ANALYZE document_versions"))
        yield connection
        transaction.rollback()


def _principal(role: Role, subject: str, profession: str | None = None) -> Principal:
    return Principal(
        role=role,
        subject=subject,
        scopes=parse_scopes(DEFAULT_SCOPES[role.value]),
        profession=profession,
    )


def _policy(*entries: Entry) -> PatientPolicy:
    return PatientPolicy(LONG, NOW, len(entries), entries)


def _entry(kind: EntryKind, subject: str, **kw: Any) -> Entry:
    return Entry(f"{kind}-{subject}", kind, subject, NOW - timedelta(days=1), **kw)


READERS = {
    "the patient": (
        Actor(_principal(Role.PATIENT, "185077512345653"), LONG, "ins:self"),
        None,
    ),
    "the treating doctor": (
        Actor(_principal(Role.PROFESSIONAL, COLLEAGUE, "10")),
        _policy(_entry(EntryKind.TREATING_DOCTOR, COLLEAGUE)),
    ),
    "a dentist of the care team": (
        Actor(_principal(Role.PROFESSIONAL, STRANGER, "40")),
        _policy(_entry(EntryKind.CARE_TEAM, STRANGER)),
    ),
    "an author without a care relationship": (
        Actor(_principal(Role.PROFESSIONAL, COLLEAGUE, "10")),
        _policy(),
    ),
    "a professional who authored nothing here": (
        Actor(_principal(Role.PROFESSIONAL, STRANGER, "10")),
        _policy(),
    ),
    "a caregiver with a delegation for one category": (
        Actor(_principal(Role.CAREGIVER, "aidant"), proxy_key="caregiver:aidant"),
        _policy(_entry(EntryKind.DELEGATION, "caregiver:aidant", scope="read", categories={"10"})),
    ),
    "a legal representative": (
        Actor(_principal(Role.CAREGIVER, "parent"), proxy_key="caregiver:parent"),
        _policy(_entry(EntryKind.REPRESENTATIVE, "caregiver:parent")),
    ),
}


def _plan(connection: Connection, reader: str, after: tuple[datetime, str] | None) -> Any:
    actor, policy = READERS[reader]
    visible = readable(actor, LONG, policy=policy, matrix=default_matrix())
    query = candidates_query(
        SearchCriteria(LONG), after=after is not None, with_current=True, visible=visible
    )
    parameters: dict[str, Any] = {"patient_id": LONG, "limit": PAGE + 1}
    if after is not None:
        parameters["after_created"], parameters["after_id"] = after
    dialect: Any = postgresql.dialect()  # type: ignore[no-untyped-call]
    sql = str(
        query.params(parameters).compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    )
    row = connection.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")).scalar_one()
    return (row if isinstance(row, list) else json.loads(row))[0]["Plan"]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _middle(connection: Connection) -> tuple[datetime, str]:
    """The keyset of a document half-way down the record."""
    row = connection.execute(
        text(
            "SELECT created_at, id FROM documents WHERE patient_id = :patient "
            "ORDER BY created_at DESC, id DESC OFFSET :offset LIMIT 1"
        ),
        {"patient": LONG, "offset": RECORD // 2},
    ).one()
    return row[0], row[1]


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("page", ["first", "deep in the record"])
def test_a_page_of_a_long_record_reads_a_bounded_number_of_rows(
    record: Connection, reader: str, page: str
) -> None:
    after = _middle(record) if page != "first" else None

    plan = _plan(record, reader, after)

    nodes = list(_nodes(plan))
    assert plan["Node Type"] == "Limit"
    assert plan["Plan Rows"] <= PAGE + 1
    for node in nodes:
        described = f"{node['Node Type']} {node.get('Index Name', '')}"
        assert node["Node Type"] not in ("Seq Scan", "Sort", "Incremental Sort", "Hash"), described
        assert "Bitmap" not in node["Node Type"], described
        assert node["Actual Rows"] * node["Actual Loops"] <= BOUND, described
        assert node.get("Rows Removed by Filter", 0) * node["Actual Loops"] <= BOUND, described
    indexes = {node.get("Index Name") for node in nodes if node.get("Relation Name") == "documents"}
    assert indexes <= {"ix_documents_patient_created", "ix_documents_patient_author_created"}
    assert indexes


def test_a_reader_who_sees_only_what_they_authored_pages_on_the_author_index(
    record: Connection,
) -> None:
    plan = _plan(record, "an author without a care relationship", None)

    indexes = {node.get("Index Name") for node in _nodes(plan)}
    assert "ix_documents_patient_author_created" in indexes


def test_a_prepared_search_pages_a_long_record_with_the_plan_made_for_any_patient(
    record: Connection,
) -> None:
    """The server's statements are prepared, and after a few runs PostgreSQL plans them once
    for any patient (a generic plan, blind to the record's size): that plan too must read a
    page, not the record."""
    compiled = candidates_query(SearchCriteria(LONG), after=False, with_current=True).compile(
        dialect=postgresql.dialect()  # type: ignore[no-untyped-call]
    )
    values = {**compiled.params, "patient_id": LONG, "limit": PAGE + 1}
    names: list[str] = []

    def positional(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    sql = re.sub(r"%\((\w+)\)s", positional, str(compiled))
    record.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    record.exec_driver_sql(f"PREPARE page_of_any_patient AS {sql}")
    try:
        arguments = ", ".join(_literal(values[name]) for name in names)
        row = record.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE page_of_any_patient({arguments})"
        ).scalar_one()
    finally:
        record.exec_driver_sql("DEALLOCATE page_of_any_patient")
        record.exec_driver_sql("RESET plan_cache_mode")
    plan = (row if isinstance(row, list) else json.loads(row))[0]["Plan"]

    for node in _nodes(plan):
        described = f"{node['Node Type']} {node.get('Index Name', '')}"
        assert node["Actual Rows"] * node["Actual Loops"] <= BOUND, described
        assert node["Node Type"] not in ("Seq Scan", "Sort", "Hash", "Materialize"), described


def _literal(value: Any) -> str:
    """A test constant as SQL (EXECUTE's arguments are not bound parameters)."""
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"
