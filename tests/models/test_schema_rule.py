"""Ready to shard by patient (docs/scaling.md): every table is classified, and every
patient-owned table leads its primary key and unique constraints with its patient column
and carries it in its foreign keys to other patient-owned tables. Checked on the database
the migrations built, and shown to catch a table that breaks the rule."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from alembic import command
from sqlalchemy import Engine, MetaData, create_engine, text

from tests.conftest import ADMIN_URL, ON_SQLITE
from tests.models.schema_rule import read_schema, violations
from vault.migrations import alembic_config, upgrade
from vault.models import Base, sharding


def test_the_migrated_schema_follows_the_sharding_rule(services):
    with services.engine.connect() as connection:
        found = violations(read_schema(connection))
    assert found == [], "\n".join(found)


def test_every_model_is_classified_once():
    classes = [
        set(sharding.PATIENT_OWNED),
        set(sharding.REFERENCE),
        set(sharding.GLOBAL),
        set(sharding.PER_LOG),
    ]
    assert not classes[0] & classes[1]
    assert not classes[0] & classes[2]
    assert not classes[1] & classes[2]
    assert all(not classes[3] & other for other in classes[:3])
    assert set(Base.metadata.tables) - set().union(*classes) == set()
    assert all(reason.strip() for reason in sharding.GLOBAL.values())
    assert all(reason.strip() for reason in sharding.PER_LOG.values())


def test_the_audit_log_is_distributed_by_chain_and_its_trees_by_log(services):
    """Entries and chain heads go with their chain (a patient's stays with the patient);
    the tree tables are led by the log id, as the migrated database says."""
    assert sharding.PATIENT_OWNED["audit_entries"] == "chain_key"
    assert sharding.PATIENT_OWNED["audit_chain_heads"] == "chain_key"
    with services.engine.connect() as connection:
        tables = read_schema(connection)
    assert tables["audit_entries"].primary_key == ["chain_key", "chain_seq"]
    assert tables["audit_entries"].uniques == {}
    for name, key in (
        ("audit_tree_head", ["log_id"]),
        ("audit_tree_nodes", ["log_id", "level", "node_index"]),
        ("audit_checkpoints", ["log_id", "tree_size"]),
    ):
        assert name in sharding.PER_LOG
        assert tables[name].primary_key == key


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Engine]:
    if ON_SQLITE:
        engine = create_engine(f"sqlite:///{tmp_path / 'scratch.db'}")
        yield engine
        engine.dispose()
        return
    name = f"vault_scratch_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(f"{base}/{name}")
    try:
        yield engine
    finally:
        engine.dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


SCRATCH_SCHEMA = [
    "CREATE TABLE people (id VARCHAR(64) PRIMARY KEY)",
    "CREATE TABLE notes (patient_id VARCHAR(64) NOT NULL REFERENCES people (id),"
    " id VARCHAR(64) NOT NULL, code VARCHAR(64), PRIMARY KEY (patient_id, id),"
    " CONSTRAINT uq_notes_patient_code UNIQUE (patient_id, code))",
    "CREATE TABLE notes_by_id (id VARCHAR(64) PRIMARY KEY, patient_id VARCHAR(64) NOT NULL)",
    "CREATE TABLE notes_by_code (patient_id VARCHAR(64) NOT NULL, id VARCHAR(64) NOT NULL,"
    " code VARCHAR(64), PRIMARY KEY (patient_id, id))",
    "CREATE UNIQUE INDEX ix_notes_by_code_code ON notes_by_code (code, patient_id)",
    "CREATE TABLE replies (patient_id VARCHAR(64) NOT NULL, id VARCHAR(64) NOT NULL,"
    " note_id VARCHAR(64) NOT NULL, PRIMARY KEY (patient_id, id),"
    " CONSTRAINT fk_replies_note FOREIGN KEY (patient_id, note_id)"
    " REFERENCES notes (patient_id, id))",
    "CREATE TABLE stray_replies (patient_id VARCHAR(64) NOT NULL, id VARCHAR(64) NOT NULL,"
    " author VARCHAR(64) NOT NULL, PRIMARY KEY (patient_id, id),"
    " CONSTRAINT fk_stray_replies_author FOREIGN KEY (author) REFERENCES people (id))",
    "CREATE TABLE orphans (patient_id VARCHAR(64) PRIMARY KEY)",
    "CREATE TABLE settings (name VARCHAR(64) PRIMARY KEY)",
]


def test_the_checker_names_each_table_that_breaks_the_rule(scratch):
    with scratch.begin() as connection:
        for statement in SCRATCH_SCHEMA:
            connection.execute(text(statement))
    with scratch.connect() as connection:
        tables = read_schema(connection)
    owned = {
        "people": "id",
        "notes": "patient_id",
        "notes_by_id": "patient_id",
        "notes_by_code": "patient_id",
        "replies": "patient_id",
        "stray_replies": "patient_id",
        "orphans": "patient_id",
    }

    found = violations(tables, patient_owned=owned, others={"settings"})
    assert found == [
        "notes_by_code: unique ix_notes_by_code_code (code, patient_id) does not start with "
        "patient_id",
        "notes_by_id: primary key (id) does not start with patient_id",
        "stray_replies: foreign key fk_stray_replies_author (author) to patient-owned people "
        "does not carry patient_id",
    ]

    # A table nobody classified is reported; a good schema is clean.
    assert violations(tables, patient_owned=owned, others=set()) == [
        *found[:2],
        "settings: not classified (add it to vault/models/sharding.py as patient-owned, "
        "reference or global)",
        found[2],
    ]
    assert (
        violations(
            {name: tables[name] for name in ("people", "notes", "replies", "orphans", "settings")},
            patient_owned=owned,
            others={"settings"},
        )
        == []
    )


PER_LOG_SCRATCH = [
    "CREATE TABLE log_heads (log_id SMALLINT PRIMARY KEY, size BIGINT NOT NULL)",
    "CREATE TABLE log_nodes (log_id SMALLINT NOT NULL, level SMALLINT NOT NULL,"
    " node_index BIGINT NOT NULL, hash BLOB, PRIMARY KEY (log_id, level, node_index))",
    "CREATE TABLE log_nodes_global (level SMALLINT NOT NULL, node_index BIGINT NOT NULL,"
    " log_id SMALLINT NOT NULL, PRIMARY KEY (level, node_index))",
    "CREATE TABLE log_marks (log_id SMALLINT NOT NULL, size BIGINT NOT NULL,"
    " root VARCHAR(64), PRIMARY KEY (log_id, size))",
    "CREATE UNIQUE INDEX ix_log_marks_root ON log_marks (root)",
    "CREATE TABLE log_orphans (size BIGINT PRIMARY KEY)",
]


def test_the_checker_names_each_per_log_table_that_breaks_the_rule(scratch):
    with scratch.begin() as connection:
        blob = "BYTEA" if scratch.dialect.name == "postgresql" else "BLOB"
        for statement in PER_LOG_SCRATCH:
            connection.execute(text(statement.replace("BLOB", blob)))
    with scratch.connect() as connection:
        tables = read_schema(connection)
    per_log = {"log_heads", "log_nodes", "log_nodes_global", "log_marks", "log_orphans"}

    assert violations(tables, patient_owned={}, others=set(), per_log=per_log) == [
        "log_marks: unique ix_log_marks_root (root) does not start with log_id",
        "log_nodes_global: primary key (level, node_index) does not start with log_id",
        "log_orphans: has no log_id column",
    ]
    good = {name: tables[name] for name in ("log_heads", "log_nodes")}
    assert violations(good, patient_owned={}, others=set(), per_log=per_log) == []


BEFORE = "e7a3c91b5d20"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _stored_before(engine: Engine) -> None:
    """One patient's record in the schema as it was before the migration."""
    tables = MetaData()
    tables.reflect(engine)
    t = tables.tables
    common = {"kek_id": "k1", "created_at": NOW}
    rows = [
        (
            "patients",
            {
                "id": "p1",
                "ins_index": b"i" * 32,
                "version": 1,
                "updated_at": NOW,
                "resource_ciphertext": b"c",
                "resource_dek": b"d",
                **common,
            },
        ),
        (
            "binaries",
            {
                "id": "b1",
                "document_id": "d1",
                "patient_id": "p1",
                "size": 1,
                "content_type": "text/plain",
                "blob_key": "blob-1",
                "segment_size": 64,
                "wrapped_dek": b"w",
                **common,
            },
        ),
        (
            "documents",
            {
                "id": "d1",
                "patient_id": "p1",
                "master_identifier": "m1",
                "current_version": 1,
                "status": "current",
                "security_labels": " ",
                "author_kind": "professional",
                "author_id": "a1",
                "updated_at": NOW,
                "content_fingerprint": b"f" * 32,
                "created_at": NOW,
            },
        ),
        (
            "document_versions",
            {
                "document_id": "d1",
                "version": 1,
                "patient_id": "p1",
                "status": "current",
                "security_labels": " ",
                "binary_id": "b1",
                "created_by_role": "professional",
                "created_by": "a1",
                **common,
            },
        ),
        (
            "submission_sets",
            {
                "id": "s1",
                "patient_id": "p1",
                "resource_ciphertext": b"c",
                "resource_dek": b"d",
                "submitted_by_role": "professional",
                "submitted_by": "a1",
                **common,
            },
        ),
        ("submission_set_members", {"submission_set_id": "s1", "document_id": "d1", "position": 0}),
        (
            "caregiver_invitations",
            {
                "id": "c1",
                "patient_id": "p1",
                "code_hash": b"h" * 32,
                "scope": "read",
                "categories": [],
                "created_at": NOW,
                "delegation_expires_at": NOW,
                "code_expires_at": NOW,
                "created_by_role": "patient",
                "created_by": "p1",
            },
        ),
    ]
    with engine.begin() as connection:
        for name, row in rows:
            connection.execute(t[name].insert(), [row])


def test_the_migration_indexes_the_rows_already_stored_and_goes_back(scratch):
    upgrade(_url(scratch), BEFORE)
    _stored_before(scratch)

    upgrade(_url(scratch))

    with scratch.connect() as connection:
        owners = connection.execute(
            text("SELECT kind, resource_id, patient_id FROM resource_patients ORDER BY kind")
        ).all()
        assert [tuple(row) for row in owners] == [
            ("binary", "b1", "p1"),
            ("document", "d1", "p1"),
            ("submission-set", "s1", "p1"),
        ]
        assert connection.execute(text("SELECT patient_id FROM patient_ins")).all() == [("p1",)]
        assert connection.execute(
            text("SELECT patient_id, invitation_id FROM invitation_codes")
        ).all() == [("p1", "c1")]
        assert connection.execute(text("SELECT patient_id FROM submission_set_members")).all() == [
            ("p1",)
        ]
        assert violations(read_schema(connection)) == []

    command.downgrade(alembic_config(_url(scratch)), BEFORE)
    with scratch.connect() as connection:
        assert connection.execute(text("SELECT id FROM documents")).all() == [("d1",)]
        assert "resource_patients" not in read_schema(connection)
