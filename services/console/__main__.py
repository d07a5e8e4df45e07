"""`python -m services.console serve`: the web pages for the bureau, the towns, civil
affairs and finance."""

from __future__ import annotations

import click


@click.group()
def cli() -> None:
    """The console: web pages over intake, the casebook and the dashboard."""


@cli.command()
@click.option("--host", default=None, help="address to listen on [RELIEF_CONSOLE_HOST]")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="[8060]")
def serve(host: str | None, port: int | None) -> None:
    import uvicorn

    from services.console.app import create_app
    from services.console.settings import ConsoleSettings

    settings = ConsoleSettings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.console_host,
        port=port or settings.console_port,
        log_level="info",
        access_log=False,  # paths carry case ids; forms carry ID numbers (never logged)
    )


if __name__ == "__main__":
    cli()
