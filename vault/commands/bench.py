"""``vault bench``: the command line of the benchmark (docs/performance.md)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vault.commands import fail
from vault.settings import get_settings


def _say(message: str) -> None:
    typer.echo(f"  {message}", err=True)


def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="A short run (under two minutes): one store size.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    sizes: Annotated[
        str | None,
        typer.Option(help="Store sizes at which reads are timed, e.g. 10000,100000,1000000."),
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Server worker processes.")] = None,
    clients: Annotated[int | None, typer.Option(min=1, help="Concurrent ingest clients.")] = None,
    read_clients: Annotated[
        int | None, typer.Option(min=1, help="Concurrent readers (default 8).")
    ] = None,
    long_record: Annotated[
        int | None,
        typer.Option(min=1, help="Documents of the patient with a long record (default 10000)."),
    ] = None,
    seconds: Annotated[
        float | None, typer.Option(min=1, help="How long the ingest is timed.")
    ] = None,
) -> None:
    """Run the benchmarks against VAULT_DATABASE_URL and print the results.

    The database must be empty or a store an earlier run filled: the run adds made-up
    patients and documents, growing the store to the sizes asked for (a million documents
    by default, ten thousand with --quick), and keeps them for the next run.
    """
    from vault.bench.runner import FULL, QUICK, run, table, with_overrides  # noqa: PLC0415
    from vault.errors import VaultError  # noqa: PLC0415

    plan = QUICK if quick else FULL
    stages = None
    if sizes:
        try:
            stages = tuple(sorted(int(part) for part in sizes.split(",") if part.strip()))
        except ValueError:
            fail("--sizes takes numbers separated by commas")
    plan = with_overrides(
        plan,
        stages=stages,
        workers=workers,
        clients=clients,
        ingest_seconds=seconds,
        read_clients=read_clients,
        long_record=long_record,
    )
    try:
        results = run(get_settings(), plan, progress=_say)
    except VaultError as error:
        fail(error.message)
    typer.echo(json.dumps(results, sort_keys=True) if json_output else table(results))
