"""The ``vault`` command."""

from __future__ import annotations

import os
import signal
import sys
from datetime import timedelta
from typing import Annotated, Any

import typer

from vault.commands import fail
from vault.commands.audit import app as audit_app
from vault.commands.backup import backup_app, restore_app
from vault.commands.bench import bench as bench_command
from vault.commands.clients import app as clients_app
from vault.commands.exports import app as exports_app
from vault.commands.notifications import app as notifications_app
from vault.commands.records import app as records_app
from vault.settings import Settings, get_settings, served_base_url

app = typer.Typer(help="Patient health-document vault.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Key-encryption keys.", no_args_is_help=True)
blobs_app = typer.Typer(help="Blob store (document ciphertext).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(clients_app, name="clients")
app.add_typer(blobs_app, name="blobs")
app.add_typer(audit_app, name="audit")
app.add_typer(backup_app, name="backup")
app.add_typer(restore_app, name="restore")
app.add_typer(notifications_app, name="notifications")
app.add_typer(exports_app, name="exports")
app.add_typer(records_app, name="records")
app.command("bench")(bench_command)


@app.command()
def serve(
    host: Annotated[
        str,
        typer.Option(help="Interface to listen on (and the base URL's, unless VAULT_BASE_URL)."),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port to listen on (and the base URL's, unless VAULT_BASE_URL).")
    ] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    with_demo: Annotated[
        bool,
        typer.Option("--demo", help="Seed the demonstration accounts first (as vault demo)."),
    ] = False,
) -> None:
    """Apply pending migrations on the embedded default database, then serve."""
    import uvicorn  # noqa: PLC0415

    from vault.migrations import upgrade  # noqa: PLC0415
    from vault.observability.logs import configure_logging  # noqa: PLC0415

    settings = get_settings()
    if "base_url" not in settings.model_fields_set:
        # Without VAULT_BASE_URL the public URL is the address served: the links the vault
        # writes (e-mails, a caregiver's invitation, what `--demo` prints), its Location
        # headers and its issuer's URLs must reach this server, not the default port. The
        # app (and each worker process) reads its settings from the environment.
        os.environ["VAULT_BASE_URL"] = served_base_url(host, port)
        get_settings.cache_clear()
        settings = get_settings()
    configure_logging(json_output=settings.log_json, level=settings.log_level)
    # uvicorn lets in-flight requests finish on SIGTERM, then raises the signal again to
    # die by it; a stop the supervisor asked for, done cleanly, is a success.
    signal.signal(signal.SIGTERM, _stopped)
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        upgrade(settings.effective_database_url)
    if with_demo:
        demo()
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "factory": True,
        # Forwarded headers are believed only from VAULT_TRUSTED_PROXIES, by the app
        # itself: uvicorn's own default believes any process on loopback.
        "proxy_headers": False,
        "access_log": False,
        "log_config": None,
        "http": "httptools",
        "loop": "uvloop",
    }
    if workers == 1:
        uvicorn.run("vault.api.app:create_app", **options)
        return
    from uvicorn.config import Config  # noqa: PLC0415

    from vault.commands.serving import SocketPerWorker  # noqa: PLC0415

    try:
        SocketPerWorker(Config("vault.api.app:create_app", **options)).run()
    except OSError as error:
        fail(f"cannot listen on {host}:{port}: {error.strerror or error}")


def _stopped(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations to VAULT_DATABASE_URL."""
    from vault.migrations import upgrade  # noqa: PLC0415

    upgrade(get_settings().effective_database_url)
    typer.echo("database is up to date")


@app.command()
def token(
    role: Annotated[
        str, typer.Option(help="patient, professional, caregiver, software or operator.")
    ],
    sub: Annotated[
        str, typer.Option(help="INS, IDNPS, caregiver id, client id or operator login.")
    ],
    scope: Annotated[str | None, typer.Option(help="SMART v2 scopes, space separated.")] = None,
    ttl: Annotated[
        int | None,
        typer.Option(min=1, help="Lifetime in seconds (default VAULT_TOKEN_TTL_SECONDS)."),
    ] = None,
    profession: Annotated[
        str | None, typer.Option(help="ANS profession code (professionals).")
    ] = None,
    specialty: Annotated[str | None, typer.Option(help="Specialty code (doctors).")] = None,
    on_behalf_of: Annotated[
        str | None, typer.Option("--on-behalf-of", help="IDNPS the software acts for.")
    ] = None,
) -> None:
    """Print an access token signed by the embedded issuer (development and tests only)."""
    from vault.errors import VaultError  # noqa: PLC0415
    from vault.identity.tokens import EmbeddedIssuer  # noqa: PLC0415

    settings: Settings = get_settings()
    if not settings.embedded_issuer:
        fail("the embedded issuer is off (VAULT_EMBEDDED_ISSUER=false)")
    if role == "software" and not on_behalf_of:
        fail("software tokens need --on-behalf-of IDNPS")
    try:
        issuer = EmbeddedIssuer(settings.data_dir, settings.issuer, settings.token_audience)
        typer.echo(
            issuer.mint(
                role,
                sub,
                scope=scope,
                ttl=settings.token_ttl_seconds if ttl is None else ttl,
                profession=profession,
                specialty=specialty,
                on_behalf_of=on_behalf_of,
            )
        )
    except VaultError as error:
        fail(error.message)


@app.command()
def demo() -> None:
    """Seed demonstration accounts for the patient's space and say how to sign in
    (refused when the embedded issuer is off)."""
    from vault.errors import VaultError  # noqa: PLC0415
    from vault.migrations import upgrade  # noqa: PLC0415
    from vault.services import build_services  # noqa: PLC0415
    from vault.web.demo import PROFESSIONALS, seed  # noqa: PLC0415
    from vault.web.signin import DEMO_CAREGIVER, DEMO_PATIENT  # noqa: PLC0415

    settings = get_settings()
    if not settings.embedded_issuer:
        fail("the embedded issuer is off (VAULT_EMBEDDED_ISSUER=false): no demonstration")
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        upgrade(settings.effective_database_url)
    services = build_services(settings)
    try:
        seeded = seed(services)
    except VaultError as error:
        fail(error.message)
    finally:
        services.close()
    typer.echo("Comptes de démonstration " + ("créés." if seeded.created else "déjà présents."))
    typer.echo(f"Ouvrez {settings.base_url.rstrip('/')}/ (scripts/serve) puis choisissez :")
    typer.echo(
        f"  - « Se connecter en tant que {DEMO_PATIENT.name} » : la patiente et ses documents ;"
    )
    typer.echo(f"  - « Se connecter en tant que {DEMO_CAREGIVER.name} » : son aidant.")
    typer.echo("Professionnels de démonstration (RPPS) :")
    for professional in PROFESSIONALS:
        typer.echo(f"  - {professional.name} : {professional.rpps}")
    typer.echo(
        "Par l'API : vault token --role patient --sub "
        f"{DEMO_PATIENT.subject} ; --role professional --sub {PROFESSIONALS[0].idnps}"
    )


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new master key and rewrap every patient key under it; documents are untouched."""
    from vault.observability.progress import progress  # noqa: PLC0415
    from vault.services import build_services  # noqa: PLC0415

    services = build_services(get_settings())
    try:
        with progress("rewrapping patient keys") as bar:
            new_master, count = services.keys.rotate_master_key(
                services.session_factory, progress=bar.advance
            )
    finally:
        services.close()
    typer.echo(f"new master key {new_master}; {count} patient keys rewrapped")


@keys_app.command("retire")
def keys_retire(
    retention_days: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Destroy a master key only this many days after it stopped being current "
            "(default VAULT_BACKUP_RETENTION_DAYS): older data backups still need it.",
        ),
    ] = None,
) -> None:
    """Destroy old master keys that no patient key needs any more, once no kept backup can
    need them either."""
    from vault.services import build_services  # noqa: PLC0415

    settings = get_settings()
    days = settings.backup_retention_days if retention_days is None else retention_days
    services = build_services(settings)
    try:
        with services.session_factory() as session:
            outcome = services.keys.retire_unused_master_keys(session, timedelta(days=days))
    finally:
        services.close()
    typer.echo(f"retired {len(outcome.retired)} master keys")
    for kept in outcome.kept:
        typer.echo(kept.describe())


@blobs_app.command("sweep")
def blobs_sweep(
    grace: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Only blobs older than this many seconds "
            "(default: VAULT_ORPHAN_BLOB_GRACE_SECONDS); keep it above the longest request.",
        ),
    ] = None,
) -> None:
    """Remove blobs no committed document points to, and writes that never finished."""
    from datetime import timedelta  # noqa: PLC0415

    from vault.db import SQLAlchemyError  # noqa: PLC0415
    from vault.errors import VaultError  # noqa: PLC0415
    from vault.services import build_services  # noqa: PLC0415
    from vault.storage.blobs.sweep import sweep_orphans  # noqa: PLC0415

    settings = get_settings()
    seconds = settings.orphan_blob_grace_seconds if grace is None else grace
    try:
        services = build_services(settings)
        try:
            result = sweep_orphans(
                services.blobs, services.session_factory, timedelta(seconds=seconds)
            )
        finally:
            services.close()
    except VaultError as error:
        fail(error.message)
        return
    except (SQLAlchemyError, OSError) as error:
        fail(f"{type(error).__name__}: {str(error).splitlines()[0]}")
        return
    typer.echo(
        f"removed {len(result.removed)} orphaned blobs and "
        f"{result.interrupted} interrupted writes older than {seconds} seconds"
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
