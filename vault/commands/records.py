"""``vault records ...``: the purge of records whose time has come."""

from __future__ import annotations

from typing import Annotated

import typer

from vault.errors import VaultError
from vault.settings import get_settings

app = typer.Typer(help="Records over their lifetime (closure, deletion).", no_args_is_help=True)


@app.command()
def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say how many records are due; change nothing.")
    ] = False,
) -> None:
    """Crypto-shred closed records past their retention period or their early-deletion
    date, leaving tombstones. Idempotent and resumable: run it daily (docs/operations.md)."""
    from vault.observability.progress import progress  # noqa: PLC0415
    from vault.services import build_services  # noqa: PLC0415
    from vault.services.records import purger  # noqa: PLC0415

    try:
        services = build_services(get_settings())
    except VaultError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(1) from None
    try:
        job = purger(services)
        due = job.pending()
        if dry_run:
            typer.echo(f"{due} records due")
            return
        with progress("purging records", total=due) as bar:
            stats = job.run(advance=bar.advance)
        typer.echo(
            f"shredded {stats.shredded} records ({stats.documents} documents), "
            f"completed {stats.completed}"
        )
    finally:
        services.close()
