"""``vault exports ...``: build queued exports from the command line."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from vault.commands import fail
from vault.errors import VaultError
from vault.settings import get_settings

app = typer.Typer(help="Exports of whole records.", no_args_is_help=True)


@app.command()
def build(
    once: Annotated[bool, typer.Option(help="Build what is queued, then stop.")] = False,
) -> None:
    """Build queued exports and delete expired ones (what every `vault serve` does)."""
    from vault.services import build_services  # noqa: PLC0415
    from vault.services.exports import export_worker  # noqa: PLC0415

    try:
        services = build_services(get_settings())
    except VaultError as error:
        fail(error.message)
    try:
        worker = export_worker(services)
        while True:
            stats = worker.run_once()
            if once:
                typer.echo(f"built {stats.built}, failed {stats.failed}, expired {stats.expired}")
                return
            time.sleep(max(services.settings.export_poll_seconds, 0.5))
    finally:
        services.close()
