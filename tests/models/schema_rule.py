"""The sharding rule (docs/scaling.md), checked on a live database.

The schema is read from the database itself (PostgreSQL's catalog; SQLAlchemy's inspector
on SQLite), never from the models, so what is checked is what the migrations built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, inspect, text

from vault.models import sharding


@dataclass
class ForeignKey:
    name: str
    columns: list[str]
    referred_table: str
    referred_columns: list[str]


@dataclass
class Table:
    name: str
    columns: set[str] = field(default_factory=set)
    primary_key: list[str] = field(default_factory=list)
    # Unique constraints and unique indexes (the primary key aside), by name.
    uniques: dict[str, list[str]] = field(default_factory=dict)
    foreign_keys: list[ForeignKey] = field(default_factory=list)


_PG_TABLES = text(
    "SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
)
_PG_COLUMNS = text(
    "SELECT attname FROM pg_attribute WHERE attrelid = :oid AND attnum > 0 AND NOT attisdropped"
)
# Every unique index: the primary key's, unique constraints' and bare unique indexes
# (partial ones included: a shard can only enforce what includes its key).
_PG_UNIQUE = text(
    "SELECT i.indisprimary, ic.relname, "
    "array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n) "
    "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
    "WHERE i.indrelid = :oid AND i.indisunique"
)
_PG_FOREIGN = text(
    "SELECT con.conname, rc.relname, "
    "array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, n) "
    "JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.n), "
    "array(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, n) "
    "JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.n) "
    "FROM pg_constraint con JOIN pg_class rc ON rc.oid = con.confrelid "
    "WHERE con.conrelid = :oid AND con.contype = 'f'"
)


def read_schema(connection: Connection) -> dict[str, Table]:
    if connection.dialect.name == "postgresql":
        return _read_postgresql(connection)
    return _read_by_inspection(connection)


def _read_postgresql(connection: Connection) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    for oid, name in connection.execute(_PG_TABLES):
        table = Table(name, columns=set(connection.execute(_PG_COLUMNS, {"oid": oid}).scalars()))
        for primary, index_name, columns in connection.execute(_PG_UNIQUE, {"oid": oid}):
            if primary:
                table.primary_key = list(columns)
            else:
                table.uniques[index_name] = list(columns)
        for fk_name, referred, columns, referred_columns in connection.execute(
            _PG_FOREIGN, {"oid": oid}
        ):
            table.foreign_keys.append(
                ForeignKey(fk_name, list(columns), referred, list(referred_columns))
            )
        tables[name] = table
    return tables


def _read_by_inspection(connection: Connection) -> dict[str, Table]:
    inspector = inspect(connection)
    tables: dict[str, Table] = {}
    for name in inspector.get_table_names():
        table = Table(name, columns={column["name"] for column in inspector.get_columns(name)})
        table.primary_key = list(inspector.get_pk_constraint(name)["constrained_columns"])
        for position, unique in enumerate(inspector.get_unique_constraints(name)):
            table.uniques[unique["name"] or f"unique #{position}"] = list(unique["column_names"])
        for index in inspector.get_indexes(name):
            if index["unique"]:
                table.uniques[str(index["name"])] = [str(c) for c in index["column_names"]]
        for position, fk in enumerate(inspector.get_foreign_keys(name)):
            table.foreign_keys.append(
                ForeignKey(
                    fk["name"] or f"foreign key #{position}",
                    list(fk["constrained_columns"]),
                    fk["referred_table"],
                    list(fk["referred_columns"]),
                )
            )
        tables[name] = table
    return tables


def violations(
    tables: dict[str, Table],
    patient_owned: dict[str, str] | None = None,
    others: set[str] | None = None,
    per_log: set[str] | None = None,
) -> list[str]:
    """Each way the schema breaks the rule, as "<table>: <what>"; empty when it holds.

    ``patient_owned`` maps a patient-owned table to its patient column, ``per_log`` names
    the tables kept per audit log (led by ``log_id``) and ``others`` names the reference
    and global tables (by default, the lists in ``vault.models.sharding``).
    """
    defaults = patient_owned is None and others is None and per_log is None
    owned = sharding.PATIENT_OWNED if patient_owned is None else patient_owned
    logs = (set(sharding.PER_LOG) if defaults else set()) if per_log is None else per_log
    classified_elsewhere = (
        set(sharding.REFERENCE) | set(sharding.GLOBAL) if others is None else others
    )
    found: list[str] = []
    for name in sorted(tables):
        table = tables[name]
        if name in logs:
            found.extend(_led_by(table, LOG_KEY))
            continue
        if name not in owned:
            if name not in classified_elsewhere:
                found.append(
                    f"{name}: not classified (add it to vault/models/sharding.py as "
                    "patient-owned, reference or global)"
                )
            continue
        key = owned[name]
        if key not in table.columns:
            found.append(f"{name}: patient-owned but has no {key} column")
            continue
        found.extend(_led_by(table, key))
        for fk in table.foreign_keys:
            if fk.referred_table not in owned:
                continue
            pairs = dict(zip(fk.columns, fk.referred_columns, strict=True))
            if pairs.get(key) != owned[fk.referred_table]:
                found.append(
                    f"{name}: foreign key {fk.name} ({', '.join(fk.columns)}) to "
                    f"patient-owned {fk.referred_table} does not carry {key}"
                )
    found.extend(
        f"{name}: classified but not in the database"
        for name in sorted((set(owned) | logs | classified_elsewhere) - set(tables))
        if defaults
    )
    return found


# The column a table kept per audit log is distributed by.
LOG_KEY = "log_id"


def _led_by(table: Table, key: str) -> list[str]:
    """The table's primary key and every unique constraint or index start with ``key``."""
    name = table.name
    if key not in table.columns:
        return [f"{name}: has no {key} column"]
    found = []
    if not table.primary_key or table.primary_key[0] != key:
        found.append(
            f"{name}: primary key ({', '.join(table.primary_key)}) does not start with {key}"
        )
    for unique_name, columns in sorted(table.uniques.items()):
        if not columns or columns[0] != key:
            found.append(
                f"{name}: unique {unique_name} ({', '.join(columns)}) does not start with {key}"
            )
    return found
