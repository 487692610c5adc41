"""``vault notifications ...``: send the e-mail outbox, see and replay its dead letters."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from vault.commands import fail
from vault.commands import services as command_services

app = typer.Typer(help="E-mail notifications to patients.", no_args_is_help=True)


@app.command()
def send(
    once: Annotated[bool, typer.Option(help="Send what is due, then stop.")] = False,
) -> None:
    """Send the e-mails that are due (VAULT_SMTP_*), retrying with backoff."""
    from vault.services.email import email_worker  # noqa: PLC0415

    with command_services() as services:
        worker = email_worker(services)
        if worker is None:
            fail("e-mail is off: set VAULT_SMTP_HOST (docs/operations.md)")
            return
        while True:
            stats = worker.run_once()
            if once:
                typer.echo(
                    f"sent {stats.sent}, retrying {stats.retrying}, gave up {stats.dead}, "
                    f"skipped {stats.skipped}"
                )
                return
            time.sleep(max(services.settings.email_poll_seconds, 0.5))


@app.command("dead-letters")
def dead_letters(
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 100,
) -> None:
    """List the e-mails given up on: id, event, record, attempts, last error (no address)."""
    from vault.notifications.outbox import dead_letters as list_dead  # noqa: PLC0415

    with command_services() as services:
        rows = list_dead(services.session_factory, limit)
    typer.echo("id\tkind\trecord\tattempts\tlast_error\tcreated_at\tfailed_at")
    for row in rows:
        typer.echo(
            f"{row.id}\t{row.kind}\t{row.patient_id}\t{row.attempts}\t{row.last_error or ''}\t"
            f"{row.created_at.isoformat()}\t{row.failed_at.isoformat()}"
        )


@app.command()
def replay(email_id: Annotated[int, typer.Argument(help="The dead letter's id.")]) -> None:
    """Put a dead letter back in the queue, its attempts reset (same Message-ID)."""
    from vault.notifications.outbox import NotDead  # noqa: PLC0415
    from vault.notifications.outbox import replay as replay_one  # noqa: PLC0415

    with command_services() as services:
        try:
            replay_one(services.session_factory, email_id)
        except NotDead as error:
            fail(str(error))
    typer.echo(f"queued {email_id}")
