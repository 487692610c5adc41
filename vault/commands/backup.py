"""``vault backup ...`` and ``vault restore ...`` (procedure: docs/operations.md)."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vault.commands import fail, services
from vault.errors import IntegrityError, VaultError
from vault.keyfiles import create_private_file
from vault.settings import get_settings

if TYPE_CHECKING:
    from vault.services import Services

backup_app = typer.Typer(
    help="Backups: the data (consistent, encrypted) and, apart, the keys.", no_args_is_help=True
)
restore_app = typer.Typer(help="Restore a backup into an empty vault.", no_args_is_help=True)

PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        exists=True,
        dir_okay=False,
        help="File holding the passphrase; asked for interactively when omitted.",
    ),
]


@contextmanager
def _services() -> Iterator[Services]:
    """The command's services (vault.commands.services), with what a backup adds to its
    errors: a file that does not authenticate, a file that cannot be read or written."""
    with services() as built:
        try:
            yield built
        except IntegrityError:
            fail("the backup is damaged or was altered (it does not authenticate)")
        except OSError as error:
            fail(f"{error.strerror}: {error.filename}")


def _passphrase(path: Path | None, *, confirm: bool) -> str:
    if path is not None:
        return path.read_text().rstrip("\r\n")
    if not sys.stdin.isatty():
        fail("--passphrase-file is required when not run from a terminal")
    entered: str = typer.prompt(
        "Key backup passphrase", hide_input=True, confirmation_prompt=confirm
    )
    return entered


@backup_app.command("create")
def create(
    out: Annotated[Path, typer.Argument(help="The backup file to write (never overwritten).")],
) -> None:
    """Take a consistent, encrypted backup of the database and the blobs.

    The archive is sealed under a key wrapped by the key provider: it is useless without
    the keys, which it never contains (see `vault backup keys`).
    """
    from vault.backup.export import create_backup  # noqa: PLC0415

    with _services() as services:
        summary = create_backup(services, out)
        rows = sum(summary.tables.values())
        typer.echo(
            f"backup {summary.backup_id} written to {out}: {rows} rows in "
            f"{len(summary.tables)} tables, {summary.blobs} blobs ({summary.blob_bytes} bytes), "
            f"schema {summary.schema_revision}"
        )


@backup_app.command("verify")
def verify(
    backup: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
) -> None:
    """Read a whole backup with this vault's keys and check it is complete and intact."""
    from vault.backup.restore import read_backup  # noqa: PLC0415

    with _services() as services:
        summary = read_backup(services.key_provider, backup)
        typer.echo(
            f"backup {summary.backup_id} of {summary.created_at} is intact: "
            f"{sum(summary.tables.values())} rows, {summary.blobs} blobs, "
            f"{len(summary.tombstones)} deleted documents, schema {summary.schema_revision}"
        )


@backup_app.command("shreds")
def shreds(
    out: Annotated[Path, typer.Argument(help="The shred list to write.")],
) -> None:
    """Export the deletions so far, for a restore to replay.

    Small and cheap: run it every few minutes (`vault restore data --shreds-from`).
    """
    from vault.backup.shreds import tombstones_in, write_shred_list  # noqa: PLC0415

    with _services() as services:
        with services.session_factory() as session:
            found = tombstones_in(session)
        write_shred_list(out, found, services.key_provider)
        typer.echo(f"{len(found)} deleted documents listed in {out}")


@backup_app.command("keys")
def keys(
    out: Annotated[Path, typer.Argument(help="The key backup file to write.")],
    passphrase_file: PassphraseFile = None,
) -> None:
    """Back up the local keyring and the signing keys under a passphrase.

    Store it apart from the data backups, under other custody.
    """
    from vault.backup import keys as key_backup  # noqa: PLC0415

    if out.exists():
        fail(f"{out} exists; a backup never overwrites a file")
    try:
        material = key_backup.collect(get_settings())
        sealed = key_backup.seal(material, _passphrase(passphrase_file, confirm=True))
    except VaultError as error:
        fail(error.message)
        return
    # Whole or not at all, and 0600 from its first byte.
    if not create_private_file(out, sealed):
        fail(f"{out} exists; a backup never overwrites a file")
    held = (["keyring"] if material.keyring else []) + sorted(material.files)
    typer.echo(f"key backup written to {out}: {', '.join(held)}")


@restore_app.command("data")
def restore_data(
    backup: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    shreds_from: Annotated[
        list[str] | None,
        typer.Option(
            "--shreds-from",
            help="Newer deletions to replay: the old database's URL (or a replica's), a newer "
            "backup, or a shred list. Repeatable.",
        ),
    ] = None,
    operator: Annotated[
        str | None, typer.Option(help="Who restores, for the audit log (default: OS user).")
    ] = None,
) -> None:
    """Restore a data backup into an empty database and blob store.

    Then replay deletions newer than the backup and verify the audit log.
    """
    from vault.backup.restore import restore_backup  # noqa: PLC0415
    from vault.backup.shreds import Tombstone, load_tombstones, replay  # noqa: PLC0415

    with _services() as services:
        tombstones: list[Tombstone] = []
        for source in shreds_from or []:
            tombstones += load_tombstones(source, services.key_provider)
        summary = restore_backup(services, backup)
        tombstones += [Tombstone.decode(item) for item in summary.tombstones]
        with services.session_factory() as session, session.begin():
            replayed = replay(session, tombstones, services.access, operator or getpass.getuser())
        typer.echo(
            f"restored backup {summary.backup_id} of {summary.created_at}: "
            f"{sum(summary.tables.values())} rows, {summary.blobs} blobs; "
            f"{replayed} later deletions replayed"
        )
        report = services.audit_log.verifier.verify(services.session_factory)
        if not report.ok:
            failure = report.first_failure
            fail(
                "the restored audit log does not verify: "
                f"{failure.describe() if failure else 'unknown failure'}; do not serve it"
            )
        typer.echo(f"audit log verified: {report.summary()}")


@restore_app.command("shreds")
def restore_shreds(
    sources: Annotated[
        list[str],
        typer.Argument(help="Database URLs, data backups or shred lists holding newer deletions."),
    ],
    operator: Annotated[
        str | None, typer.Option(help="Who replays, for the audit log (default: OS user).")
    ] = None,
) -> None:
    """Replay deletions into this vault's database.

    For a database brought back otherwise than by `vault restore data` (a point-in-time
    recovery, a failover to a lagging replica).
    """
    from vault.backup.shreds import Tombstone, load_tombstones, replay  # noqa: PLC0415

    with _services() as services:
        tombstones: list[Tombstone] = []
        for source in sources:
            tombstones += load_tombstones(source, services.key_provider)
        with services.session_factory() as session, session.begin():
            replayed = replay(session, tombstones, services.access, operator or getpass.getuser())
        typer.echo(f"{replayed} deletions replayed")


@restore_app.command("keys")
def restore_keys(
    backup: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    passphrase_file: PassphraseFile = None,
) -> None:
    """Put the keys of a key backup where this vault's settings expect them.

    Never overwrites a key file.
    """
    from vault.backup import keys as key_backup  # noqa: PLC0415

    settings = get_settings()
    try:
        material = key_backup.unseal(
            backup.read_bytes(), _passphrase(passphrase_file, confirm=False)
        )
        written = key_backup.install(material, settings)
    except VaultError as error:
        fail(error.message)
        return
    typer.echo(f"restored {len(written)} key files: {', '.join(str(path) for path in written)}")
