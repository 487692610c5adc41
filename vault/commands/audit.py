"""``vault audit ...``: verify the log, sign a checkpoint, export for a SIEM, deliver
notifications, print the checkpoint key."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vault.commands import fail
from vault.commands import services as command_services
from vault.settings import get_settings

if TYPE_CHECKING:
    pass

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


def read_published(path: Path) -> list[str]:
    """Signed notes from a file of checkpoints as the API serves them: one JSON object,
    a page ({"checkpoints": [...]}), a JSON array, or JSON lines."""
    text = path.read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(document, dict):
        document = document.get("checkpoints", [document])
    return [str(item["note"]) for item in document]


@app.command()
def verify(
    patient: Annotated[
        str | None, typer.Option(help="Check only this patient's chain and its entries' proofs.")
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Checkpoints published earlier (saved from GET /audit/checkpoints) to hold "
            "the log to, besides the ones it stores.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Processes checking the chains of a large log side by side, on PostgreSQL "
            "(default: one per CPU).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Check only what was added after this signed tree size, which an earlier "
            "verification reported intact (it prints the size to start from next time); "
            "with several audit logs, one size per log, separated by commas.",
        ),
    ] = None,
) -> None:
    """Exit 0 when every chain and the Merkle tree match the signed checkpoints; otherwise
    print the first entry that fails and exit 1."""
    if patient is not None and since is not None:
        fail("--patient and --since check different things: give one of them")
    sizes = _parse_sizes(since) if since is not None else None
    try:
        published = read_published(checkpoints) if checkpoints else []
    except (ValueError, KeyError, TypeError):
        fail("the checkpoints file holds no signed checkpoints")
        return
    with command_services() as services:
        verifier = services.audit_log.verifier
        if workers is not None:
            verifier.workers = workers
        if patient:
            report = verifier.verify_patient(services.session_factory, patient, published)
        elif sizes is not None:
            report = verifier.verify_since(
                services.session_factory, sizes[0] if len(sizes) == 1 else sizes, published
            )
        else:
            report = verifier.verify(services.session_factory, published)
    failure = report.first_failure
    if failure is None:
        what = f"what was added after signed tree size {since}, " if since is not None else ""
        typer.echo(f"audit log intact: {what}{report.summary()}")
        if report.signed_size is not None:
            typer.echo(
                f"intact up to signed tree size {report.signed_size}: next time, "
                f"`vault audit verify --since {report.signed_size}` checks only what follows"
            )
        return
    typer.echo(f"FAILED {failure.describe()}")
    fail(f"the audit log failed verification ({len(report.failures)} problems found)")


def _parse_sizes(text: str) -> list[int]:
    parts = text.split(",")
    if not all(part.strip().isdigit() for part in parts):
        raise typer.BadParameter("a tree size, or one per audit log separated by commas")
    return [int(part) for part in parts]


@app.command()
def logs(
    count: Annotated[
        int | None,
        typer.Argument(
            min=1,
            help="Set the number of audit logs (Merkle trees); only while the log is empty.",
        ),
    ] = None,
) -> None:
    """Print the number of audit logs, or set it before the first entry (docs/audit.md)."""
    from vault.db import unit_of_work  # noqa: PLC0415
    from vault.errors import VaultError  # noqa: PLC0415

    with command_services() as services, unit_of_work(services.session_factory) as session:
        tree = services.audit_log.tree
        if count is not None:
            try:
                tree.configure(session, count)
            except VaultError as error:
                fail(error.message)
                return
        typer.echo(str(tree.logs(session)))


@app.command()
def checkpoint() -> None:
    """Take every committed entry into the tree and sign a checkpoint; prints it as JSON
    (with several audit logs, each log's, one per line)."""
    from vault.audit.checkpoints import checkpoint_json  # noqa: PLC0415

    with command_services() as services:
        row = services.audit_log.checkpoints.make(services.session_factory)
        with services.session_factory() as session:
            logs = services.audit_log.tree.logs(session)
            # With several audit logs, each log's latest, one line each.
            others = [services.audit_log.checkpoints.latest(session, log) for log in range(1, logs)]
    if row is None and not any(others):
        fail("the audit log is empty: nothing to sign")
        return
    for each in (row, *others):
        if each is not None:
            typer.echo(json.dumps(checkpoint_json(each)))


def _parse_since(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("an ISO 8601 date or date and time") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@app.command()
def export(
    since: Annotated[
        str,
        typer.Option(help="ISO 8601 date or time (UTC unless given): entries recorded from then."),
    ],
    after_id: Annotated[
        int | None, typer.Option(help="Only entries after this id (incremental shipping).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of standard output.")
    ] = None,
) -> None:
    """The log as JSON lines for a SIEM, oldest first: identifiers and hashes, no content."""
    from vault.audit.export import export_lines  # noqa: PLC0415

    start = _parse_since(since)
    with command_services() as services, services.session_factory() as session:
        stream = export_lines(session, start, after_id)
        if output is None:
            for line in stream:
                sys.stdout.write(line + "\n")
        else:
            with output.open("w", encoding="utf-8") as handle:
                for line in stream:
                    handle.write(line + "\n")


@app.command()
def deliver(
    once: Annotated[bool, typer.Option(help="Deliver what is due, then stop.")] = False,
) -> None:
    """Deliver pending patient notifications (VAULT_NOTIFY_WEBHOOK_URL, else the log)."""
    from vault.services.delivery import delivery_worker  # noqa: PLC0415

    settings = get_settings()
    with command_services() as services:
        worker = delivery_worker(settings, services.session_factory)
        while True:
            stats = worker.run_once()
            if once:
                typer.echo(
                    f"delivered {stats.delivered}, retrying {stats.retrying}, gave up {stats.dead}"
                )
                return
            time.sleep(max(settings.notify_poll_seconds, 0.5))


@app.command("public-key")
def public_key() -> None:
    """Print the checkpoint signing key as a C2SP verifier key, to publish (created on
    first use)."""
    with command_services() as services:
        typer.echo(services.audit_log.checkpoints.key.signer().verifier.verifier_key)


@app.command("verify-export")
def verify_export(
    archive: Annotated[Path, typer.Argument(help="The export's zip, as downloaded.")],
    key: Annotated[
        str | None,
        typer.Option(
            help="The log's verifier key as the vault publishes it (GET /audit/public-key); "
            "without it, the key inside the archive is used."
        ),
    ] = None,
) -> None:
    """Check, with no access to the vault, that an export's access history is the one the
    log holds: exit 0 when it is, 1 otherwise (naming the first thing that fails)."""
    from vault.exports.verify import ExportInvalid, verify_archive  # noqa: PLC0415

    try:
        result = verify_archive(archive, key)
    except ExportInvalid as error:
        fail(f"export does not verify: {error}")
        return
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(
        f"ok: {result.entries} history entries in the checkpoint of {result.tree_size} entries, "
        f"{result.documents} documents match their files"
    )
