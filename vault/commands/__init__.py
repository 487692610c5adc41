"""The `vault` command's groups, one module each (vault/cli.py mounts them), and their one
way to report an error: ``fail`` (the message on stderr, exit status 1)."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)
