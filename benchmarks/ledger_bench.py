"""How fast postings go into PostgreSQL: the ledger's own writer against a bare COPY.

    python benchmarks/ledger_bench.py [--postings 100000] [--batch 2000]

Creates a scratch database on the server of RELIEF_DATABASE_ADMIN_URL (default: the local
stack), migrates it, then writes the same postings twice, in transactions of --batch:

1. `LedgerStore.store_batch` — locks, dedup, hash chain, reserve guard, COPY, positions,
   and the database's own checks at commit (balanced, reserves, foreign keys);
2. a bare `copy_records_to_table` of the same entry and line rows into tables without
   constraints, indexes or triggers: the floor of what the server can take.

`--dashboard` measures what finance's dashboard pays as the book grows: at each tenth of
the postings, one snapshot (balances, today's figures, counts by kind, last postings, head)
and the minute's carried-on `verify`, beside a full `verify` of the same book.

`--breakdown` then says what each part costs: the same postings into fresh databases
with one guarantee taken away at a time (the balanced checks, the lines' checks of their
entry and account, the secondary unique indexes; not the reserve guard, which keeps the
running balances the writer reads), and the writer's own Python work (the hash chain and
seals, planned in memory) timed apart.

Not a test: it prints figures (docs/design.md "batched" quotes ~396k rows/s for bare COPY on a
2-core machine with PostgreSQL 15).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.local import stack as local_stack
from relief_platform.secrets import Sealer
from services.ledger.adapters import postgres
from services.ledger.app import DEV_CHAIN_KEY_HEX
from services.ledger.domain import seals
from services.ledger.domain.entries import (
    IncomingPosting,
    Line,
    SourcePosition,
)
from services.ledger.domain.plan import plan_batch

TOWNS = [f"3703211{n:02d}" for n in range(9)]
TOPIC = "bench.postings"
START = datetime(2024, 7, 1, tzinfo=UTC)


def postings(count: int) -> list[IncomingPosting]:
    out: list[IncomingPosting] = []
    for i in range(count):
        town = TOWNS[i % len(TOWNS)]
        if i < len(TOWNS):  # fund each reserve first, far above what the grants take
            lines = (
                Line(f"town_reserve:{town}", "debit", 1_000_000_000),
                Line("county_fund:county", "credit", 1_000_000_000),
            )
            kind = "reserve_funded"
        else:
            amount = 1 + (i * 7919) % 10_000  # up to 100 yuan: a million fit the reserves
            lines = (
                Line(f"town_reserve_held:{town}", "debit", amount),
                Line(f"town_reserve:{town}", "credit", amount),
            )
            kind = "advance_granted"
        out.append(
            IncomingPosting(
                posting_id=uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{i}"),
                kind=kind,
                town=town,
                correlation_id=f"case-{i}",
                causation_id=None,
                occurred_at=START + timedelta(seconds=i),
                recorded_at=START + timedelta(seconds=i),
                memo=f"{kind} {i}",
                lines=lines,
                source=SourcePosition(TOPIC, 0, i),
                raw="{}",
            )
        )
    return out


SEALER = Sealer(bytes.fromhex(DEV_CHAIN_KEY_HEX))


async def bench_store(pool: asyncpg.Pool, items: list[IncomingPosting], batch: int) -> float:
    store = postgres.LedgerStore(pool, SEALER)
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        result = await store.store_batch(chunk, {(TOPIC, 0): chunk[-1].source.offset + 1})
        if result.stored != len(chunk):
            raise SystemExit(f"expected {len(chunk)} stored, got {result}")
    return time.perf_counter() - started


async def bench_bare_copy(
    conn: asyncpg.Connection, items: list[IncomingPosting], batch: int
) -> float:
    await conn.execute("CREATE TABLE bare_entries (LIKE ledger_entries INCLUDING IDENTITY)")
    await conn.execute("CREATE TABLE bare_lines (LIKE ledger_lines)")
    # the same rows the ledger writes, hashes included, computed before the clock starts
    plan = plan_batch(items, {}, {}, [])
    entry_rows = [postgres._entry_row(e, p, bytes(32)) for e, p in plan.entries]
    line_rows = [
        (e.posting_id, n, ln.account, ln.side, ln.amount_fen)
        for e, _ in plan.entries
        for n, ln in enumerate(e.lines, start=1)
    ]
    per_entry = 2
    started = time.perf_counter()
    for start in range(0, len(entry_rows), batch):
        async with conn.transaction():
            await conn.copy_records_to_table(
                "bare_entries",
                columns=postgres.ENTRY_COLUMNS,
                records=entry_rows[start : start + batch],
            )
            await conn.copy_records_to_table(
                "bare_lines",
                columns=postgres.LINE_COLUMNS,
                records=line_rows[start * per_entry : (start + batch) * per_entry],
            )
    return time.perf_counter() - started


async def dashboard_as_the_book_grows(
    pool: asyncpg.Pool, app_url: str, items: list[IncomingPosting], batch: int
) -> None:
    """Snapshot and verify costs at each tenth of the book: flat is the goal (0008)."""
    from schemas.towns import load_county
    from services.ledger.domain.verify import Verifier
    from services.ledger.web import snapshot

    county = load_county()
    store = postgres.LedgerStore(pool, SEALER)
    verifier = Verifier(None)
    step = max(batch, len(items) // 10)
    print(f"\nthe dashboard as the book grows ({batch} postings per transaction)")
    print(f"{'postings':>10}{'snapshot ms':>13}{'verify carried on ms':>22}{'full verify ms':>16}")
    for start in range(0, len(items), step):
        for at in range(start, min(start + step, len(items)), batch):
            chunk = items[at : min(at + batch, start + step, len(items))]
            await store.store_batch(chunk, {(TOPIC, 0): chunk[-1].source.offset + 1})
        now = START + timedelta(seconds=min(start + step, len(items)))
        began = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            await snapshot.read(
                conn, county, timedelta(hours=24), now, open_cases=None, max_postings=50
            )
        snap_ms = 1000 * (time.perf_counter() - began)
        began = time.perf_counter()
        carried = await postgres.verify(app_url, None, verifier=verifier)
        carried_ms = 1000 * (time.perf_counter() - began)
        began = time.perf_counter()
        full = await postgres.verify(app_url, None)
        full_ms = 1000 * (time.perf_counter() - began)
        if not (carried.ok and full.ok and carried.head_hash == full.head_hash):
            raise SystemExit(f"verify disagrees: {carried.problems[:3]} {full.problems[:3]}")
        done = min(start + step, len(items))
        print(f"{done:>10,}{snap_ms:>13.1f}{carried_ms:>22.1f}{full_ms:>16.1f}")


def as_role(url: str, role: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(
        parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}", path=f"/{database}")
    )


# One guarantee taken away at a time (as the owner, on a scratch database): what it costs
WITHOUT: dict[str, list[str]] = {
    "entries' balanced check (deferred, per row)": [
        "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_balanced",
    ],
    "lines' checks (entry, account, balanced)": [
        "ALTER TABLE ledger_lines DISABLE TRIGGER ledger_lines_balanced",
    ],
    "unique hash and (chain, seq)": [
        "ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_hash_key",
        "ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_chain_chain_seq_key",
    ],
    "the balances' index of lines": ["DROP INDEX ledger_lines_account"],
    "the dashboard's running figures (0008)": [
        "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_counted",
        "ALTER TABLE ledger_lines DISABLE TRIGGER ledger_lines_summed",
    ],
}


@contextlib.asynccontextmanager
async def scratch_ledger(
    server: str, without: list[str]
) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A fresh, migrated ledger database with `without` applied first: (app url, pool)."""
    name = f"ledger_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{server}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}" OWNER "{local_stack.OWNER_ROLE}"')
    try:
        owner_url = as_role(f"{server}/x", local_stack.OWNER_ROLE, name)
        app_url = as_role(f"{server}/x", local_stack.APP_ROLE, name)
        await postgres.migrate(owner_url, local_stack.APP_ROLE)
        if without:
            owner = await asyncpg.connect(owner_url)
            try:
                for sql in without:
                    await owner.execute(sql)
            finally:
                await owner.close()
        pool = await postgres.connect_pool(app_url, 2)
        try:
            yield app_url, pool
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def one_store(
    server: str, items: list[IncomingPosting], batch: int, without: list[str]
) -> float:
    """store_batch of `items` into a fresh database with `without` applied first."""
    async with scratch_ledger(server, without) as (_, pool):
        return await bench_store(pool, items, batch)


def python_work(items: list[IncomingPosting], batch: int) -> tuple[float, float]:
    """Seconds of the writer's own work: planning (hash chain, checks) and sealing."""
    started = time.perf_counter()
    plans = [plan_batch(items[s : s + batch], {}, {}, []) for s in range(0, len(items), batch)]
    planned = time.perf_counter() - started
    started = time.perf_counter()
    for plan in plans:
        for e, _ in plan.entries:
            seals.seal_entry(SEALER, e.hash)
    return planned, time.perf_counter() - started


async def breakdown(server: str, items: list[IncomingPosting], batch: int, base_s: float) -> None:
    n = len(items)
    print(f"\nwhat each part costs ({n} postings, {batch} per transaction; each row one run)")
    print(f"{'':<56}{'seconds':>9}{'postings/s':>12}{'its share':>11}")
    print(f"{'everything (as above)':<56}{base_s:>9.2f}{n / base_s:>12,.0f}{'':>11}")
    for what, sql in WITHOUT.items():
        took = await one_store(server, items, batch, sql)
        share = (base_s - took) / base_s
        print(f"{'without ' + what:<56}{took:>9.2f}{n / took:>12,.0f}{share:>11.0%}")
    planned, sealed = python_work(items, batch)
    what = "the writer: plan (hash chain, checks)"
    print(f"{what:<56}{planned:>9.2f}{'':>12}{planned / base_s:>11.0%}")
    print(
        f"{'the writer: seals (HMAC per entry)':<56}{sealed:>9.2f}{'':>12}{sealed / base_s:>11.0%}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postings", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--breakdown", action="store_true", help="what each part costs")
    parser.add_argument(
        "--dashboard", action="store_true", help="the dashboard's costs as the book grows"
    )
    args = parser.parse_args()
    info = local_stack.local_info()
    admin_url = os.environ.get("RELIEF_DATABASE_ADMIN_URL", info.admin_url)
    server = admin_url.rsplit("/", 1)[0]
    name = f"ledger_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{server}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}" OWNER "{local_stack.OWNER_ROLE}"')
    try:
        owner_url = as_role(admin_url, local_stack.OWNER_ROLE, name)
        app_url = as_role(admin_url, local_stack.APP_ROLE, name)
        await postgres.migrate(owner_url, local_stack.APP_ROLE)
        items = postings(args.postings)
        pool = await postgres.connect_pool(app_url, 2)
        try:
            ledger_s = await bench_store(pool, items, args.batch)
        finally:
            await pool.close()
        report = await postgres.verify(app_url, SEALER)
        owner = await asyncpg.connect(owner_url)
        try:
            bare_s = await bench_bare_copy(owner, items, args.batch)
        finally:
            await owner.close()
        n = len(items)
        print(f"{n} postings (2 lines each), {args.batch} per transaction")
        print(f"{'':<34}{'seconds':>10}{'postings/s':>14}{'rows/s':>12}")
        print(
            f"{'ledger store_batch':<34}{ledger_s:>10.2f}{n / ledger_s:>14,.0f}"
            f"{3 * n / ledger_s:>12,.0f}"
        )
        print(
            f"{'bare copy_records_to_table':<34}{bare_s:>10.2f}{n / bare_s:>14,.0f}"
            f"{3 * n / bare_s:>12,.0f}"
        )
        print(
            f"ledger / bare: {bare_s / ledger_s:.0%}; verify ok={report.ok} "
            f"({report.entries_checked} entries), head {report.head_hash.hex()[:16]}…"
        )
        if args.breakdown:
            await breakdown(server, items, args.batch, ledger_s)
        if args.dashboard:
            async with scratch_ledger(server, []) as (url, fresh):
                await dashboard_as_the_book_grows(fresh, url, items, args.batch)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
