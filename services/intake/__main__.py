"""`python -m services.intake serve|openapi`: run the API, or print its OpenAPI document."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from relief_platform.secrets import MissingSecretError, secret_or_development
from services.intake.settings import IntakeSettings

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def openapi_text() -> str:
    """The document checked in at docs/openapi.json (a test fails when they drift)."""
    from schemas.towns import load_county
    from services.intake.adapters.reads import NoReadSource
    from services.intake.app import create_app
    from services.intake.domain.tokens import TokenTable

    class _NoSink:
        topic = "unused"

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        async def send(self, key: bytes, value: bytes, topic: str | None = None) -> object:
            raise RuntimeError("the OpenAPI document is built without Kafka")

        async def send_many(self, items: object) -> object:
            raise RuntimeError("the OpenAPI document is built without Kafka")

    app = create_app(
        IntakeSettings(id_hash_key="00" * 16),
        sink=_NoSink(),  # type: ignore[arg-type]
        reads=NoReadSource(),
        tokens=TokenTable({}),
        county=load_county(),
    )
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


@click.group()
def cli() -> None:
    """The intake HTTP API of the relief service."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--reuse-port",
    is_flag=True,
    help="share the port with other intake instances (SO_REUSEPORT: the kernel spreads "
    "connections over them)",
)
def serve(host: str, port: int, log_level: str, reuse_port: bool) -> None:
    """Serve the API with uvicorn (Kafka: RELIEF_KAFKA_BOOTSTRAP)."""
    import uvicorn

    from services.intake.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    settings = IntakeSettings()
    try:
        settings.hash_key()  # production: no key, no start (before any port is opened)
        # production runs several instances: keys in one process's memory would let a
        # retry on another instance record a write twice
        secret_or_development(
            "RELIEF_INTAKE_KEYS_DATABASE_URL", settings.intake_keys_database_url, "memory"
        )
    except MissingSecretError as exc:
        raise click.ClickException(str(exc)) from exc
    app = create_app(settings)
    # uvicorn's own access log would print raw paths; ours masks ID numbers (scrub_ids)
    if not reuse_port:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
        return
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level=log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


@cli.command()
def migrate() -> None:
    """Create the `intake` schema (idempotency keys) as the owner role; grant the service
    role its rights (RELIEF_DATABASE_OWNER_URL, RELIEF_INTAKE_APP_ROLE)."""
    import asyncio
    import os

    from services.intake.adapters.idempotency_store import migrate as run_migrations

    owner_url = os.environ.get(
        "RELIEF_DATABASE_OWNER_URL", "postgresql://relief_owner@127.0.0.1:15432/relief"
    )
    role = os.environ.get("RELIEF_INTAKE_APP_ROLE", "relief_app")
    applied = asyncio.run(run_migrations(owner_url, role))
    click.echo(f"applied: {', '.join(applied)}" if applied else "up to date")


@cli.command()
@click.option("--write", is_flag=True, help=f"write {OPENAPI_FILE} instead of printing")
def openapi(write: bool) -> None:
    """Print (or write) the OpenAPI document."""
    text = openapi_text()
    if write:
        OPENAPI_FILE.write_text(text, encoding="utf-8")
        click.echo(f"wrote {OPENAPI_FILE}")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    cli()
