"""`python -m services.emergency worker|claims|clock`: the processor, the county's claims
stage, or the tick producer."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from relief_platform import loops
from services.emergency.settings import EmergencySettings


@click.group()
def cli() -> None:
    """The emergency-aid processor (24-hour advance relief, town reserves)."""


@cli.command()
@click.option(
    "--loglevel",
    type=click.Choice(["crit", "error", "warn", "info", "debug"]),
    default="info",
    show_default=True,
)
def worker(loglevel: str) -> None:
    """Run a processor worker (Faust). Start as many as there are intake partitions."""
    from services.emergency.adapters.preflight import PreflightFailed, require_world
    from services.emergency.app import create_app

    settings = EmergencySettings()
    # Fail fast on a wrong world: one clear line per problem, and no restart will help.
    try:
        require_world(
            settings.kafka_bootstrap,
            intake_topic=settings.intake_topic,
            partitions=settings.partitions,
            changelog_prefix=f"{settings.emergency_app_id}-",
            changelog_replication=settings.emergency_changelog_replication,
            output_topics=(
                settings.decisions_topic,
                settings.postings_topic,
                settings.rejected_topic,
            ),
        )
    except PreflightFailed as failed:
        failed.exit()
    from services.emergency.adapters.faust_app import STATE_TABLE

    _run_worker(create_app(settings), settings, STATE_TABLE, settings.emergency_app_id, loglevel)


def _run_worker(
    app: Any, settings: EmergencySettings, table: str, app_id: str, loglevel: str
) -> None:
    """Run a Faust worker; first drop a local copy of its table that is ahead of the
    changelog (it would stop Faust at every start)."""
    from aiokafka.errors import KafkaError

    from services.emergency.adapters.faust_app import EXIT_UNAVAILABLE
    from services.emergency.adapters.local_store import check_local_store

    try:
        check_local_store(
            settings.kafka_bootstrap, Path(app.conf.tabledir), table, f"{app_id}-{table}-changelog"
        )
    except (KafkaError, TimeoutError) as exc:
        # Kafka away at start: unavailable (69), as when outputs go unacknowledged - the
        # supervisor starts the worker again, nothing was read or decided
        print(f"worker: Kafka did not answer at start ({exc}); exiting", file=sys.stderr)
        sys.exit(EXIT_UNAVAILABLE)
    loops.use_uvloop()  # before Faust makes the worker's loop
    sys.argv = [sys.argv[0], "worker", "--loglevel", loglevel, "--without-web"]
    app.main()


@cli.command()
@click.option(
    "--loglevel",
    type=click.Choice(["crit", "error", "warn", "info", "debug"]),
    default="info",
    show_default=True,
)
def claims(loglevel: str) -> None:
    """Run the county's claims stage (P6 across towns): one worker holds it at a time;
    start two and the second takes over (restoring the stage's state) when the first
    stops."""
    from services.emergency.adapters.claims_app import CLAIMS_TABLE
    from services.emergency.adapters.preflight import PreflightFailed, require_world
    from services.emergency.app import create_claims_app

    settings = EmergencySettings()
    try:
        require_world(
            settings.kafka_bootstrap,
            intake_topic=settings.claims_topic,
            partitions=1,
            changelog_prefix=f"{settings.claims_app_id}-",
            changelog_replication=settings.emergency_changelog_replication,
            output_topics=(settings.intake_topic, settings.rejected_topic),
        )
    except PreflightFailed as failed:
        failed.exit()
    _run_worker(
        create_claims_app(settings), settings, CLAIMS_TABLE, settings.claims_app_id, loglevel
    )


@cli.command()
@click.option("--interval", type=float, default=None, help="seconds between ticks")
def clock(interval: float | None) -> None:
    """Write a tick into every intake partition, forever (deadlines are judged on ticks)."""
    from services.emergency.adapters.clock import run_clock

    settings = EmergencySettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    loops.run(
        run_clock(
            settings.kafka_bootstrap, interval or settings.clock_interval_s, settings.intake_topic
        )
    )


if __name__ == "__main__":
    cli()
