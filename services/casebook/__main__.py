"""`python -m services.casebook migrate|run|serve|rebuild`: the one read side of cases."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from relief_platform import loops
from services.casebook.settings import CasebookSettings


@click.group()
def cli() -> None:
    """The casebook: every case as the processor's decisions state it, and what became of
    each submission."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


@cli.command()
def migrate() -> None:
    """Create the casebook's schema (as the owner role) and grant the service role."""
    from services.casebook.adapters.postgres import migrate as run_migrations

    settings = CasebookSettings()
    applied = asyncio.run(
        run_migrations(
            settings.database_owner_url, settings.casebook_app_role, settings.casebook_read_role
        )
    )
    click.echo(f"applied: {', '.join(applied)}" if applied else "up to date")


@cli.command()
def run() -> None:
    """Read decisions, dead letters and submissions into PostgreSQL until SIGTERM."""
    from relief_platform.secrets import MissingSecretError
    from services.casebook.app import run as run_casebook

    settings = CasebookSettings()
    try:
        settings.seal_sealer()  # production: no seal key, no start
    except MissingSecretError as exc:
        raise click.ClickException(str(exc)) from exc
    loops.run(run_casebook(settings))


@cli.command()
def verify() -> None:
    """Check that every stored decision carries the casebook writer's seal; exit 1 naming
    each one that does not (a row added around the writer). Needs RELIEF_CASEBOOK_SEAL_KEY."""
    from services.casebook.adapters.postgres import verify_seals

    settings = CasebookSettings()
    checked, problems = asyncio.run(verify_seals(settings.database_url, settings.seal_sealer()))
    click.echo(f"decisions checked: {checked}")
    for p in problems:
        click.echo(
            f"DISAGREES: decision {p.event_id} (town {p.town}, case {p.case_id}): {p.reason}"
        )
    click.echo("ok" if not problems else "NOT OK")
    if problems:
        sys.exit(1)


@cli.command()
def rebuild() -> None:
    """Drop the casebook and replay the topics into it, up to where they end now."""
    from services.casebook.app import rebuild as rebuild_casebook

    counts = asyncio.run(rebuild_casebook(CasebookSettings()))
    click.echo(
        f"rebuilt: {counts.decisions} decisions ({counts.duplicates} read twice), "
        f"{counts.submissions} submissions, {counts.rejections} rejections"
    )


@cli.command()
@click.option("--host", default=None, help="address to listen on [RELIEF_CASEBOOK_HOST]")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="[8070]")
def serve(host: str | None, port: int | None) -> None:
    """Serve the reads over HTTP (cases, deadlines, open cases, submissions)."""
    import uvicorn

    from services.casebook.adapters.http import create_app

    settings = CasebookSettings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.casebook_host,
        port=port or settings.casebook_port,
        log_level="info",
        access_log=False,  # paths carry case ids: the metrics count routes instead
    )


if __name__ == "__main__":
    cli()
