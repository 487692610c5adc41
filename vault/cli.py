"""The ``vault`` command."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from vault.settings import Settings, get_settings

app = typer.Typer(help="Patient health-document vault.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Key-encryption keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Apply pending migrations on the embedded default database, then serve."""
    import uvicorn  # noqa: PLC0415

    from vault.migrations import upgrade  # noqa: PLC0415

    settings = get_settings()
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        upgrade(settings.effective_database_url)
    uvicorn.run(
        "vault.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        access_log=False,
    )


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
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
    profession: Annotated[
        str | None, typer.Option(help="ANS profession code (professionals).")
    ] = None,
    specialty: Annotated[str | None, typer.Option(help="Specialty code (doctors).")] = None,
    on_behalf_of: Annotated[
        str | None, typer.Option("--on-behalf-of", help="IDNPS the software acts for.")
    ] = None,
) -> None:
    """Print an access token signed by the embedded issuer (development and tests only)."""
    from vault.access.tokens import EmbeddedIssuer  # noqa: PLC0415
    from vault.errors import VaultError  # noqa: PLC0415

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
                ttl=ttl,
                profession=profession,
                specialty=specialty,
                on_behalf_of=on_behalf_of,
            )
        )
    except VaultError as error:
        fail(error.message)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new master key and rewrap every patient key under it; documents are untouched."""
    from vault.services import build_services  # noqa: PLC0415

    services = build_services(get_settings())
    try:
        new_master, count = services.keys.rotate_master_key(services.session_factory)
    finally:
        services.close()
    typer.echo(f"new master key {new_master}; {count} patient keys rewrapped")


@keys_app.command("retire")
def keys_retire() -> None:
    """Destroy old master keys that no patient key needs any more."""
    from vault.services import build_services  # noqa: PLC0415

    services = build_services(get_settings())
    try:
        with services.session_factory() as session:
            retired = services.keys.retire_unused_master_keys(session)
    finally:
        services.close()
    typer.echo(f"retired {len(retired)} master keys")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
