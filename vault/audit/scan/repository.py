"""The SQL of the fast verification passes (vault/audit/scan, vault/audit/parallel and the
worker processes): plain psycopg, no SQLAlchemy, so that a worker starts in a fraction of a
second."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from vault.access.chain import HASHED_COLUMNS

# A chain key range: rows with lower <= chain_key < upper; None is unbounded.
KeyRange = tuple[str | None, str | None]

# What the hash covers, in the order of HASHED_FIELDS (which is canonical_text's), the
# instant in UTC and the detail as its JSON text; then the links.
_AS_READ = {"occurred_at": "occurred_at AT TIME ZONE 'UTC'", "detail": "detail::text"}
_SELECTED = ", ".join(_AS_READ.get(column, column) for column in HASHED_COLUMNS)
# Column names from HASHED_FIELDS, no input: S608 does not apply.
_ENTRIES = f"SELECT {_SELECTED}, prev_hash, entry_hash FROM audit_entries"  # noqa: S608
_HEADS = "SELECT chain_key, last_seq, last_hash FROM audit_chain_heads"
LEAVES = (
    "SELECT entry_hash, leaf_index FROM audit_entries WHERE log_id = %s "
    "AND leaf_index IS NOT NULL ORDER BY leaf_index"
)
NODES = (
    "SELECT node_index, hash FROM audit_tree_nodes WHERE log_id = %s "
    "AND level = %s AND node_index >= %s AND node_index < %s ORDER BY node_index"
)

# The first key of each 1/parts of the entries, weighted by the heads' counts (only the
# balance depends on them: the ranges cover every key whatever the heads say).
_SPLITS = """
WITH heads AS (
    SELECT chain_key,
           sum(greatest(last_seq, 1)) OVER (ORDER BY chain_key ROWS UNBOUNDED PRECEDING) AS upto,
           sum(greatest(last_seq, 1)) OVER () AS total
    FROM audit_chain_heads
)
SELECT DISTINCT ON (part) chain_key, total
FROM (SELECT chain_key, total, floor((upto - 1) * %s / total) AS part FROM heads) AS parts
ORDER BY part, chain_key
"""


def entries_in(keys: KeyRange) -> tuple[sql.Composed, list[str]]:
    """The entries of the chains in ``keys``, chain by chain, in sequence."""
    return _keys_in(_ENTRIES, keys, "chain_key, chain_seq")


def heads_in(keys: KeyRange) -> tuple[sql.Composed, list[str]]:
    """The heads of the chains in ``keys``, in the entries' order."""
    return _keys_in(_HEADS, keys, "chain_key")


def _keys_in(query: str, keys: KeyRange, order: str) -> tuple[sql.Composed, list[str]]:
    lower, upper = keys
    conditions: list[sql.Composable] = []
    params: list[str] = []
    if lower is not None:
        conditions.append(sql.SQL("chain_key >= %s"))
        params.append(lower)
    if upper is not None:
        conditions.append(sql.SQL("chain_key < %s"))
        params.append(upper)
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    return sql.SQL(query) + where + sql.SQL(" ORDER BY " + order), params


def split_points(connection: psycopg.Connection[Any], parts: int) -> list[tuple[Any, ...]]:
    """(chain key, total entries) at the start of each of up to ``parts`` ranges."""
    return connection.execute(_SPLITS, (max(parts, 1),)).fetchall()


def export_snapshot(connection: psycopg.Connection[Any]) -> str:
    """The transaction's snapshot, for other connections to read exactly what it reads."""
    row = connection.execute("SELECT pg_export_snapshot()").fetchone()
    assert row is not None
    return str(row[0])


def adopt_snapshot(connection: psycopg.Connection[Any], snapshot: str) -> None:
    """Must be the transaction's first statement."""
    connection.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
