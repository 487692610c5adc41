"""The `vault` command's groups, one module each (vault/cli.py mounts them), their one
way to report an error: ``fail`` (the message on stderr, exit status 1), and their one way
to hold the services for a command: ``services``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer

from vault.errors import VaultError
from vault.settings import get_settings

if TYPE_CHECKING:
    from vault.services import Services


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@contextmanager
def services() -> Iterator[Services]:
    """The services for one command, closed after it; a VaultError ends it with ``fail``.
    Built on first use, so ``vault --help`` does not build them."""
    from vault.services import build_services  # noqa: PLC0415

    try:
        built = build_services(get_settings())
    except VaultError as error:
        fail(error.message)
    try:
        yield built
    except VaultError as error:
        fail(error.message)
    finally:
        built.close()
