"""`python -m services.ledger migrate|run|verify|balances|movements|alerts|statement|serve`."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import date, datetime

import click

from relief_platform import loops
from schemas.money import yuan
from services.ledger.app import LedgerSettings

# verify's exit codes: 0 the journal holds, 1 it does not (a finding for finance and audit)
EXIT_TAMPERED = 1


@click.group()
def cli() -> None:
    """Finance's fund ledger: append-only, double-entry, hash-chained (P10)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


@cli.command()
def migrate() -> None:
    """Apply the SQL migrations as the owner role and grant the service role its rights."""
    from services.ledger.adapters.postgres import migrate as run_migrations

    settings = LedgerSettings()
    applied = asyncio.run(
        run_migrations(
            settings.database_owner_url, settings.ledger_app_role, settings.ledger_read_role
        )
    )
    click.echo(f"applied: {', '.join(applied)}" if applied else "up to date")


@cli.command()
def run() -> None:
    """Consume ledger.postings.v1 into PostgreSQL until SIGTERM."""
    from relief_platform.secrets import MissingSecretError
    from services.ledger.app import run_consumer

    settings = LedgerSettings()
    try:
        settings.chain_sealer()  # production: no chain key, no start
    except MissingSecretError as exc:
        raise click.ClickException(str(exc)) from exc
    loops.run(run_consumer(settings))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable report")
@click.option(
    "--publish",
    "publish_dir",
    type=click.Path(file_okay=False, writable=True),
    default=None,
    help="when the journal holds, write today's head to DIR/ledger-head-YYYY-MM-DD.json "
    "(for finance to sign and keep outside the database)",
)
@click.option(
    "--published",
    "published_files",
    type=click.Path(exists=True, dir_okay=False),
    multiple=True,
    help="a head file published earlier: its chain heads must still be in the ledger",
)
def verify(as_json: bool, publish_dir: str | None, published_files: tuple[str, ...]) -> None:
    """Recompute the hash chains, the writer's seals and the balances; exit 1 at the first
    disagreement. Needs the chain key (RELIEF_LEDGER_CHAIN_KEY)."""
    from pathlib import Path

    from schemas.envelope import CST
    from services.ledger.adapters.postgres import verify as run_verify
    from services.ledger.domain.heads import HeadFileError, head_document, parse_head_document

    settings = LedgerSettings()
    published = []
    for name in published_files:
        try:
            published.extend(parse_head_document(Path(name).read_text("utf-8"), name))
        except HeadFileError as exc:
            raise click.UsageError(str(exc)) from exc
    report = asyncio.run(run_verify(settings.database_url, settings.chain_sealer(), published))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries_checked": report.entries_checked,
                    "seals_checked": report.seals_checked,
                    "chain_key_id": report.key_id,
                    "published_heads_checked": len(published),
                    "head_hash": report.head_hash.hex(),
                    "chain_heads": {c: h.hex() for c, h in report.chain_heads.items()},
                    "problems": [
                        {
                            "chain": p.chain,
                            "chain_seq": p.chain_seq,
                            "posting_id": None if p.posting_id is None else str(p.posting_id),
                            "reason": p.reason,
                        }
                        for p in report.problems
                    ],
                },
                indent=2,
            )
        )
    else:
        click.echo(f"entries checked: {report.entries_checked} (seals under key {report.key_id})")
        click.echo(f"published heads checked: {len(published)}")
        for chain, head in report.chain_heads.items():
            click.echo(f"chain {chain}: head {head.hex()}")
        for problem in report.problems:
            click.echo(f"DISAGREES: {problem.describe()}")
        click.echo(f"head hash: {report.head_hash.hex()}")
        click.echo("ok" if report.ok else "NOT OK")
    if not report.ok:
        sys.exit(EXIT_TAMPERED)
    if publish_dir is not None:
        now = datetime.now(CST)
        path = Path(publish_dir) / f"ledger-head-{now.date().isoformat()}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            head_document(
                day=now.date(),
                published_at=now,
                head_hash=report.head_hash,
                chain_heads=report.chain_heads,
                chain_seqs=report.chain_seqs,
                entries_checked=report.entries_checked,
                key_id=report.key_id,
            ),
            encoding="utf-8",
        )
        click.echo(f"published: {path}", err=as_json)


@cli.command()
@click.option("--town", default=None, help="a town code, or 'county'")
def balances(town: str | None) -> None:
    """Balances by account (normal side), in fen and yuan."""
    from services.ledger.adapters import postgres

    async def go() -> list[postgres.AccountBalance]:
        pool = await postgres.connect_pool(LedgerSettings().database_url, 1)
        try:
            return await postgres.balances(pool, town)
        finally:
            await pool.close()

    for b in asyncio.run(go()):
        click.echo(f"{b.account:<34} {b.balance_fen:>16} fen {yuan(b.balance_fen):>18} yuan")


@cli.command()
@click.option("--town", required=True)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
def movements(town: str, limit: int) -> None:
    """A town reserve's movements with the running balance."""
    from services.ledger.adapters import postgres

    async def go() -> list[postgres.Movement]:
        pool = await postgres.connect_pool(LedgerSettings().database_url, 1)
        try:
            return await postgres.reserve_movements(pool, town, limit=limit)
        finally:
            await pool.close()

    for m in asyncio.run(go()):
        click.echo(
            f"{m.occurred_at.isoformat()} #{m.chain_seq:<6} {m.kind:<24} "
            f"{m.change_fen:>+14} {m.balance_fen:>14} {m.posting_id}"
        )


@cli.command()
@click.option("--town", default=None)
def alerts(town: str | None) -> None:
    """Postings the reserve guard refused (R4), with the figures used."""
    from services.ledger.adapters import postgres

    async def go() -> list[postgres.Alert]:
        pool = await postgres.connect_pool(LedgerSettings().database_url, 1)
        try:
            return await postgres.alerts(pool, town)
        finally:
            await pool.close()

    for a in asyncio.run(go()):
        click.echo(
            f"{a.occurred_at.isoformat()} {a.posting_id} {a.account} "
            f"balance {a.balance_fen} change {a.change_fen}: {a.reason}"
        )


@cli.command()
@click.option("--town", required=True, help="a town code, or 'county'")
@click.option("--from", "first_day", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--to", "last_day", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None)
def statement(town: str, first_day: datetime, last_day: datetime, out: str | None) -> None:
    """The town's statement for the days [--from, --to] (China Standard Time) as CSV."""
    from services.ledger.adapters import postgres

    async def go(first: date, last: date) -> str:
        pool = await postgres.connect_pool(LedgerSettings().database_url, 1)
        try:
            return await postgres.statement(pool, town, first, last)
        finally:
            await pool.close()

    text = asyncio.run(go(first_day.date(), last_day.date()))
    if out:
        with open(out, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.option("--host", default=None, help="address to listen on [RELIEF_DASHBOARD_HOST]")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="[8090]")
def serve(host: str | None, port: int | None) -> None:
    """The live finance dashboard (SSE) and the ledger's /metrics."""
    from services.ledger.web.app import serve as run_dashboard
    from services.ledger.web.settings import DashboardSettings

    settings = DashboardSettings()
    updates = {k: v for k, v in (("dashboard_host", host), ("dashboard_port", port)) if v}
    run_dashboard(settings.model_copy(update=updates))


if __name__ == "__main__":
    cli()
