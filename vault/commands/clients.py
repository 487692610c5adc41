"""``vault clients``: register the professional software that may ask ``/oauth/token``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from vault.commands import fail
from vault.db import Session, make_engine, make_session_factory
from vault.errors import VaultError
from vault.identity.clients import ClientRegistry, RegisteredClient
from vault.identity.scopes import format_scope
from vault.settings import get_settings

DEFAULT_SCOPES = "system/DocumentReference.crus system/Binary.r system/Patient.cr"

app = typer.Typer(help="Professional software allowed to ask /oauth/token.", no_args_is_help=True)


@contextmanager
def _session() -> Iterator[Session]:
    settings = get_settings()
    engine = make_engine(
        settings.effective_database_url,
        prepared_statements=settings.database_prepared_statements,
    )
    try:
        with make_session_factory(engine)() as session, session.begin():
            yield session
    finally:
        engine.dispose()


def _describe(client: RegisteredClient) -> str:
    methods = []
    if client.jwks is not None:
        methods.append("private_key_jwt (JWKS)")
    if client.jwks_url is not None:
        methods.append(f"private_key_jwt ({client.jwks_url})")
    if client.secret_hash is not None:
        methods.append("client_secret_basic")
    scopes = " ".join(format_scope(scope) for scope in client.scopes)
    return f"{client.client_id}\ton behalf of {client.on_behalf_of}\t{', '.join(methods)}\t{scopes}"


@app.command("add")
def add(
    client_id: Annotated[str, typer.Argument(help="The client id the software will use.")],
    on_behalf_of: Annotated[
        str,
        typer.Option(
            "--on-behalf-of", help="IDNPS of the professional (or organisation id) it acts for."
        ),
    ],
    scope: Annotated[
        str, typer.Option(help="The most its tokens may carry: SMART v2 system/ scopes.")
    ] = DEFAULT_SCOPES,
    jwks_file: Annotated[
        Path | None,
        typer.Option("--jwks-file", help="Its public keys, a JWKS file (private_key_jwt)."),
    ] = None,
    jwks_url: Annotated[
        str | None,
        typer.Option("--jwks-url", help="Where it publishes its public keys (https)."),
    ] = None,
    secret: Annotated[
        bool,
        typer.Option(
            "--secret", help="Generate a client secret (client_secret_basic, development only)."
        ),
    ] = False,
    name: Annotated[str | None, typer.Option(help="A human-readable name.")] = None,
) -> None:
    """Register professional software; a generated secret prints once, alone on stdout."""
    try:
        jwks = json.loads(jwks_file.read_text()) if jwks_file is not None else None
    except (OSError, ValueError) as error:
        fail(f"cannot read {jwks_file}: {error}")
        return
    try:
        with _session() as session:
            client, generated = ClientRegistry().register(
                session,
                client_id,
                on_behalf_of=on_behalf_of,
                scopes=scope,
                jwks=jwks,
                jwks_url=jwks_url,
                with_secret=secret,
                name=name,
            )
    except VaultError as error:
        fail(error.message)
        return
    typer.echo(f"registered {_describe(client)}", err=True)
    typer.echo(generated if generated is not None else client.client_id)


@app.command("list")
def list_clients() -> None:
    """List registered clients: id, whom they act for, how they authenticate, scopes."""
    with _session() as session:
        for client in ClientRegistry().all(session):
            typer.echo(_describe(client))


@app.command("remove")
def remove(client_id: Annotated[str, typer.Argument(help="The client to remove.")]) -> None:
    """Remove a client; the tokens it already holds expire within minutes."""
    with _session() as session:
        removed = ClientRegistry().remove(session, client_id)
    if not removed:
        fail(f"no client {client_id}")
    typer.echo(f"removed {client_id}", err=True)
