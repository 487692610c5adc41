"""The benchmark's way to the database through SQLAlchemy: the URL its loader hands to
psycopg, and the plan PostgreSQL chooses for a search."""

from __future__ import annotations

import json
from typing import Any

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
