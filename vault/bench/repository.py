"""The benchmark's SQL: the URL its loader hands to psycopg, the plan PostgreSQL chooses
for a search, the loader's reads and COPYs (vault/bench/store.py) and the raw floor's
writes (vault/bench/ingest.py)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from vault.documents import repository
from vault.documents.repository import SearchCriteria
from vault.errors import VaultError


def psycopg_url(database_url: str) -> str:
    """The SQLAlchemy URL as libpq understands it."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        raise VaultError("vault bench runs against PostgreSQL: set VAULT_DATABASE_URL")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def search_plan(session: Session, patient_id: str, count: int) -> dict[str, Any]:
    """EXPLAIN of the first statement of a search for a page of ``count``, as the
    repository builds it: the page and one more, each with its current version."""
    query = repository.candidates_query(
        SearchCriteria(patient_id=patient_id), after=False, with_current=True
    ).params(patient_id=patient_id, limit=count + 1)
    dialect: Any = postgresql.dialect()  # type: ignore[no-untyped-call]
    sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    row = session.execute(text(f"EXPLAIN (FORMAT JSON, ANALYZE, BUFFERS) {sql}")).scalar_one()
    plan: dict[str, Any] = (row if isinstance(row, list) else json.loads(row))[0]
    return plan


# -- the loader's SQL (vault/bench/store.py), over psycopg ---------------------------------
# The loader writes with COPY, which SQLAlchemy does not speak: these take its psycopg
# connection or cursor.

Connection = psycopg.Connection[Any]
Cursor = psycopg.Cursor[Any]


def store_counts(connection: Connection) -> tuple[int, int]:
    """How many patients, and how many documents, the store holds."""
    row = connection.execute(
        "SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM documents)"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def analyze(connection: Connection) -> None:
    connection.execute("ANALYZE")


def analyze_documents(connection: Connection) -> None:
    connection.execute("ANALYZE documents")


def patients_by_ins(connection: Connection, indexes: list[bytes]) -> list[tuple[Any, ...]]:
    """(INS blind index, patient id) of the patients with these indexes."""
    return connection.execute(
        "SELECT ins_index, patient_id FROM patient_ins WHERE ins_index = ANY(%s)",
        (indexes,),
    ).fetchall()


def patient_by_ins(connection: Connection, index: bytes) -> str | None:
    row = connection.execute(
        "SELECT patient_id FROM patient_ins WHERE ins_index = %s",
        (index,),
    ).fetchone()
    return str(row[0]) if row else None


def binaries_of_size(
    connection: Connection, patient_ids: list[str], size: int
) -> list[tuple[Any, ...]]:
    """(patient id, binary id) of these patients' binaries of this size."""
    return connection.execute(
        "SELECT patient_id, id FROM binaries WHERE patient_id = ANY(%s) AND size = %s",
        (patient_ids, size),
    ).fetchall()


def patients_except(connection: Connection, excluded: list[str], count: int) -> list[str]:
    rows = connection.execute(
        "SELECT id FROM patients WHERE NOT (id = ANY(%s)) ORDER BY id LIMIT %s",
        (excluded, count),
    ).fetchall()
    return [row[0] for row in rows]


def all_patient_ids(connection: Connection) -> list[str]:
    return [row[0] for row in connection.execute("SELECT id FROM patients ORDER BY id").fetchall()]


def document_count(connection: Connection, patient_id: str) -> int:
    row = connection.execute(
        "SELECT count(*) FROM documents WHERE patient_id = %s", (patient_id,)
    ).fetchone()
    return int(row[0]) if row else 0


def any_patient_key(connection: Connection) -> tuple[Any, ...] | None:
    """(id, patient id, wrapped key, master key id) of one patient's key, if any."""
    return connection.execute(
        "SELECT id, patient_id, wrapped_key, master_key_id FROM patient_keys LIMIT 1"
    ).fetchone()


def current_patient_keys(connection: Connection, patient_ids: list[str]) -> list[tuple[Any, ...]]:
    """(id, patient id, wrapped key, master key id) of each patient's newest live key."""
    return connection.execute(
        "SELECT DISTINCT ON (patient_id) id, patient_id, wrapped_key, master_key_id "
        "FROM patient_keys WHERE patient_id = ANY(%s) AND retired_at IS NULL "
        "ORDER BY patient_id, created_at DESC",
        (patient_ids,),
    ).fetchall()


def chain_heads(connection: Connection, chain_keys: list[str]) -> list[tuple[Any, ...]]:
    """(chain key, last seq, last hash) of these chains' heads."""
    return connection.execute(
        "SELECT chain_key, last_seq, last_hash FROM audit_chain_heads WHERE chain_key = ANY(%s)",
        (chain_keys,),
    ).fetchall()


def lock_chain_heads(connection: Connection, chain_keys: list[str]) -> list[tuple[Any, ...]]:
    """(chain key, last seq) of these chains' heads, locked until the transaction ends."""
    return connection.execute(
        "SELECT chain_key, last_seq FROM audit_chain_heads "
        "WHERE chain_key = ANY(%s) ORDER BY chain_key FOR UPDATE",
        (chain_keys,),
    ).fetchall()


def audit_log_count(connection: Connection) -> int:
    row = connection.execute("SELECT count(*) FROM audit_tree_head").fetchone()
    return int(row[0]) if row else 0


def copy_rows(cursor: Cursor, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    """COPY the rows into the table; ``columns`` names theirs, comma-separated."""
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def upsert_chain_heads(cursor: Cursor, heads: list[tuple[str, int, bytes, int]]) -> None:
    """Set each (chain key, last seq, last hash, log id)."""
    cursor.executemany(
        "INSERT INTO audit_chain_heads (chain_key, last_seq, last_hash, log_id) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (chain_key) DO UPDATE "
        "SET last_seq = EXCLUDED.last_seq, last_hash = EXCLUDED.last_hash",
        heads,
    )


def database_comment(connection: Connection) -> tuple[str, str | None]:
    """The current database's name and comment."""
    name, comment = connection.execute(
        "SELECT current_database(), shobj_description(oid, 'pg_database') "
        "FROM pg_database WHERE datname = current_database()"
    ).fetchone() or ("", None)
    return name, comment


def schema_state(connection: Connection) -> tuple[bool, int]:
    """Whether the vault's schema is there, and how many tables the current schema holds."""
    tables = connection.execute(
        "SELECT to_regclass('patients') IS NOT NULL, "
        "(SELECT count(*) FROM pg_tables WHERE schemaname = current_schema())"
    ).fetchone()
    vault_schema, table_count = tables if tables else (False, 0)
    return vault_schema, table_count


def holds_patients(connection: Connection) -> bool:
    return connection.execute("SELECT EXISTS (SELECT 1 FROM patients)").fetchone() == (True,)


def comment_database(connection: Connection, name: str, comment: str) -> None:
    literal = name.replace('"', '""')
    connection.execute(f"COMMENT ON DATABASE \"{literal}\" IS '{comment}'")


def server_version(connection: Connection) -> str:
    row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else ""


# -- the raw floor's SQL (vault/bench/ingest.py) --------------------------------------------

RAW_SCHEMA = "bench_raw"


def create_raw_schema(connection: Connection) -> None:
    """The raw floor's tables, afresh."""
    drop_raw_schema(connection)
    connection.execute(f"CREATE SCHEMA {RAW_SCHEMA}")
    connection.execute(
        f"CREATE TABLE {RAW_SCHEMA}.documents (id uuid PRIMARY KEY, "
        "patient_id text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), "
        "content bytea NOT NULL)"
    )
    connection.execute(
        f"CREATE TABLE {RAW_SCHEMA}.audit (id bigserial PRIMARY KEY, "
        "document_id uuid NOT NULL, occurred_at timestamptz NOT NULL DEFAULT now(), "
        "entry_hash bytea NOT NULL)"
    )


def drop_raw_schema(connection: Connection) -> None:
    connection.execute(f"DROP SCHEMA IF EXISTS {RAW_SCHEMA} CASCADE")


def insert_raw_document(
    connection: Connection, document_id: str, patient_id: str, content: bytes, digest: bytes
) -> None:
    """One document row and its audit row (the caller commits)."""
    connection.execute(
        f"INSERT INTO {RAW_SCHEMA}.documents (id, patient_id, content) "  # noqa: S608 - a constant
        "VALUES (%s, %s, %s)",
        (document_id, patient_id, content),
    )
    connection.execute(
        f"INSERT INTO {RAW_SCHEMA}.audit (document_id, entry_hash) "  # noqa: S608 - a constant
        "VALUES (%s, %s)",
        (document_id, digest),
    )
