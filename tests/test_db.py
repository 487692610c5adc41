"""The engine's connection behaviour on PostgreSQL: a multi-host URL finds the server that
takes writes, a server that stops taking writes costs one request and not the pool, and
prepared statements can be turned off for a pooler in transaction mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tests.hardening.servers import free_port
from vault.db import make_engine
from vault.services import build_services
from vault.settings import Settings


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


def _parameters(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        return dict(driver.info.get_parameters())


def test_a_multi_host_url_skips_a_dead_host_and_reaches_the_server_that_takes_writes(
    database_url: str, engines: list[Engine]
) -> None:
    url = make_url(database_url)
    dead = free_port()
    multi = url.set(host=None, port=None).update_query_pairs(
        [
            ("host", f"127.0.0.1:{dead}"),
            ("host", f"{url.host}:{url.port or 5432}"),
            ("target_session_attrs", "read-write"),
        ]
    )
    engine = make_engine(multi.render_as_string(hide_password=False))
    engines.append(engine)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT inet_server_port()")) == (url.port or 5432)
        assert connection.scalar(text("SELECT pg_is_in_recovery()")) is False


def test_connection_defaults_bound_every_attempt_and_the_url_overrides_them(
    database_url: str, engines: list[Engine]
) -> None:
    default = make_engine(database_url)
    chosen = make_engine(f"{database_url}?connect_timeout=2")
    engines += [default, chosen]
    assert _parameters(default)["connect_timeout"] == "5"
    assert _parameters(default)["keepalives_idle"] == "10"
    assert _parameters(chosen)["connect_timeout"] == "2"


def test_prepared_statements_can_be_turned_off_for_a_transaction_pooler(
    database_url: str, engines: list[Engine]
) -> None:
    usual = make_engine(database_url)
    pooled = make_engine(database_url, prepared_statements=False)
    engines += [usual, pooled]
    for engine, threshold in ((usual, 5), (pooled, None)):
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert driver is not None
            assert driver.prepare_threshold == threshold
            for _ in range(8):
                connection.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
            prepared = connection.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
            assert (prepared > 0) is (threshold is not None)


def test_a_server_that_stopped_taking_writes_costs_one_request_not_the_pool(
    database_url: str, engines: list[Engine]
) -> None:
    engine = make_engine(database_url)
    engines.append(engine)
    with engine.connect() as connection:
        # What a demoted primary looks like from a connection opened before the demotion.
        connection.execute(text("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"))
        connection.commit()
        stale = connection.scalar(text("SELECT pg_backend_pid()"))
        connection.commit()
        with pytest.raises(DBAPIError) as refused:
            connection.execute(text("CREATE TEMPORARY TABLE t (x int)"))
        assert refused.value.connection_invalidated
    with engine.begin() as connection:
        assert connection.scalar(text("SELECT pg_backend_pid()")) != stale
        connection.execute(text("CREATE TEMPORARY TABLE t (x int)"))


def test_the_read_committers_connections_follow_the_prepared_statements_setting(
    database_url: str, tmp_path
) -> None:
    """The group commit of reads' entries has an engine of its own: behind a transaction
    pooler it must not prepare statements either, or a commit lands on a server connection
    that never saw them."""
    services = build_services(
        Settings(
            database_url=database_url,
            database_prepared_statements=False,
            data_dir=tmp_path,
            base_url="http://testserver",
            blob_store="db:",
        )
    )
    try:
        group = services.access.group
        assert group is not None
        assert group._engine is not None
        with group._engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert driver is not None
            assert driver.prepare_threshold is None
    finally:
        services.close()
