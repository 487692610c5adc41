"""``alembic upgrade head`` then ``alembic check`` on a fresh PostgreSQL database: the
migrations build exactly the schema the models describe."""

from __future__ import annotations

import os
import secrets
import sys

import psycopg
from alembic import command

from vault.migrations import alembic_config

ADMIN_DSN = os.environ.get("VAULT_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def main() -> int:
    name = f"vault_migrations_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        sys.stderr.write(f"PostgreSQL is required and is unreachable: {error}\n")
        return 3
    url = (
        ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        + f"/{name}"
    )
    try:
        config = alembic_config(url)
        command.upgrade(config, "head")
        command.check(config)
        command.downgrade(config, "base")
        command.upgrade(config, "head")
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    sys.stdout.write("migrations: upgrade, check, downgrade, upgrade: ok\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
