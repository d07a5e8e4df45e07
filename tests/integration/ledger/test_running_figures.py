"""Migration 0008: the figures the dashboard reads every second (every account's balance,
each day's postings by town and kind) are kept by the journal's own statements, agree with
the journal, cannot be edited by the service, and `verify` names any that drift - also when
it carries on from an earlier run, reading only what was appended since."""

from __future__ import annotations

import asyncpg
import pytest

from schemas.envelope import CST
from services.ledger.adapters import postgres
from services.ledger.domain.entries import IncomingPosting
from services.ledger.domain.verify import DayFigure, Verifier
from tests.integration.ledger.conftest import SEALER, LedgerDb
from tests.unit.ledger.stories import QIFENG, SUOZHEN, flood, granted, incoming, paid

pytestmark = pytest.mark.integration

BALANCES_FROM_LINES = """
SELECT account,
       coalesce(sum(amount_fen) FILTER (WHERE side = 'debit'), 0) AS debit_fen,
       coalesce(sum(amount_fen) FILTER (WHERE side = 'credit'), 0) AS credit_fen
  FROM ledger_lines GROUP BY account"""

# the day figures worked out from the journal in Python, independently of the migration
ENTRIES_WITH_LINES = """
SELECT e.occurred_at, e.town, e.kind, l.account, l.side, l.amount_fen, e.posting_id
  FROM ledger_entries e JOIN ledger_lines l USING (posting_id)"""


async def store(db: LedgerDb, postings: list[IncomingPosting]) -> postgres.BatchResult:
    last = max(p.source.offset for p in postings) + 1
    return await postgres.LedgerStore(db.pool, SEALER).store_batch(postings, {("t", 0): last})


def story(per_town: int, first_offset: int = 0) -> list[IncomingPosting]:
    """A flood in two towns, and in Suozhen a grant and its payment a day and a half later
    (another day in China Standard Time)."""
    out = [incoming(p, first_offset + i) for i, p in enumerate(flood(per_town, (SUOZHEN, QIFENG)))]
    late = [granted(SUOZHEN, 2_160, 5_000), paid(SUOZHEN, 2_161, 5_000)]
    return out + [incoming(p, first_offset + len(out) + i) for i, p in enumerate(late)]


async def day_figures_from_the_journal(db: LedgerDb) -> dict[tuple[object, str, str], DayFigure]:
    postings: dict[tuple[object, str, str], set[object]] = {}
    debit: dict[tuple[object, str, str], int] = {}
    paid_out: dict[tuple[object, str, str], int] = {}
    for r in await db.pool.fetch(ENTRIES_WITH_LINES):
        key = (r["occurred_at"].astimezone(CST).date(), r["town"], r["kind"])
        postings.setdefault(key, set()).add(r["posting_id"])
        if r["side"] == "debit":
            debit[key] = debit.get(key, 0) + int(r["amount_fen"])
            if r["account"].startswith("relief_paid:"):
                paid_out[key] = paid_out.get(key, 0) + int(r["amount_fen"])
    return {k: DayFigure(len(v), debit.get(k, 0), paid_out.get(k, 0)) for k, v in postings.items()}


async def test_the_running_figures_equal_the_journal_and_verify_checks_them(
    ledger_db: LedgerDb,
) -> None:
    result = await store(ledger_db, story(40))
    assert result.alerts  # each town's last grant was refused by the guard: no lines, no figures
    running = {
        r["account"]: (int(r["debit_fen"]), int(r["credit_fen"]))
        for r in await ledger_db.pool.fetch("SELECT * FROM ledger_balances")
    }
    from_lines = {
        r["account"]: (int(r["debit_fen"]), int(r["credit_fen"]))
        for r in await ledger_db.pool.fetch(BALANCES_FROM_LINES)
    }
    assert running == from_lines and len(running) == 7  # the county fund, 3 a town
    days = await postgres.day_figures(ledger_db.pool)
    assert days == await day_figures_from_the_journal(ledger_db)
    assert len({day for day, _, _ in days}) == 2  # the late grant is on a day of its own
    assert sum(f.postings for f in days.values()) == await ledger_db.pool.fetchval(
        "SELECT count(*) FROM ledger_entries"
    )
    assert (await postgres.verify(ledger_db.app_url, SEALER)).ok

    # the service may read the figures, never write them
    async with ledger_db.pool.acquire() as conn:
        for sql in (
            "UPDATE ledger_balances SET debit_fen = 0",
            "UPDATE ledger_day_figures SET postings = 0",
            "DELETE FROM ledger_day_figures",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)

    # a figure edited around the triggers no longer matches the journal: verify names it
    admin = await asyncpg.connect(ledger_db.admin_url)
    try:
        await admin.execute(
            "UPDATE ledger_day_figures SET paid_fen = paid_fen + 1 "
            "WHERE town = $1 AND kind = 'payment_confirmed'",
            SUOZHEN,
        )
    finally:
        await admin.close()
    report = await postgres.verify(ledger_db.app_url, SEALER)
    assert not report.ok
    assert any("day figures of payment_confirmed" in p.reason for p in report.problems)


async def test_a_balance_edited_around_the_triggers_is_named(ledger_db: LedgerDb) -> None:
    await store(ledger_db, story(10))
    admin = await asyncpg.connect(ledger_db.admin_url)
    try:
        await admin.execute(
            "UPDATE ledger_balances SET credit_fen = credit_fen + 100 WHERE account = $1",
            "county_fund:county",
        )
    finally:
        await admin.close()
    report = await postgres.verify(ledger_db.app_url, SEALER)
    assert not report.ok
    assert any("county_fund:county" in p.reason for p in report.problems), report.problems


async def test_verify_carries_on_from_the_heads_it_verified(ledger_db: LedgerDb) -> None:
    first = story(20)
    await store(ledger_db, first)
    verifier = Verifier(None)
    report = await postgres.verify(ledger_db.app_url, None, verifier=verifier)
    assert report.ok
    checked = report.entries_checked
    assert checked == await ledger_db.pool.fetchval("SELECT count(*) FROM ledger_entries")

    # more postings: the carried-on run reads only those, and agrees with a full run
    more = [incoming(p, 10_000 + i) for i, p in enumerate(flood(30, (QIFENG,), seed=11))]
    more = [p for p in more if p.kind != "reserve_funded"]  # Qifeng's reserve is open
    await store(ledger_db, more)
    carried = await postgres.verify(ledger_db.app_url, None, verifier=verifier)
    full = await postgres.verify(ledger_db.app_url, None)
    assert carried.ok and full.ok
    assert carried.entries_checked == full.entries_checked > checked
    assert carried.head_hash == full.head_hash
    assert carried.balances_fen == full.balances_fen

    # an entry it had verified, rewritten by a superuser: the next carried-on run says so
    chain, (position, _) = sorted(verifier.positions().items())[0]
    admin = await asyncpg.connect(ledger_db.admin_url)
    try:
        await admin.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
        await admin.execute(
            "UPDATE ledger_entries SET hash = $3 WHERE chain = $1 AND chain_seq = $2",
            chain,
            position,
            bytes(range(32)),
        )
        await admin.execute("ALTER TABLE ledger_entries ENABLE TRIGGER USER")
    finally:
        await admin.close()
    rewritten = await postgres.verify(ledger_db.app_url, None, verifier=verifier)
    assert not rewritten.ok
    assert any("history was rewritten" in p.reason for p in rewritten.problems)
    # said once, however many runs find it again
    again = await postgres.verify(ledger_db.app_url, None, verifier=verifier)
    assert len(again.problems) == len(rewritten.problems)


async def test_today_on_the_dashboard_is_read_from_the_day_figures(ledger_db: LedgerDb) -> None:
    from services.ledger.web import snapshot

    postings = story(10)
    await store(ledger_db, postings)
    day = postings[0].occurred_at.astimezone(CST)
    rows = await ledger_db.pool.fetch(snapshot.TODAY_SQL, day.date(), list(snapshot.PAYMENT_KINDS))
    by_kind = {r["kind"]: (int(r["n"]), int(r["amount_fen"])) for r in rows}
    journal = await day_figures_from_the_journal(ledger_db)
    for kind, (n, amount) in by_kind.items():
        mine = [f for (d, _, k), f in journal.items() if d == day.date() and k == kind]
        assert n == sum(f.postings for f in mine)
        use_paid = kind in snapshot.PAYMENT_KINDS
        assert amount == sum(f.paid_fen if use_paid else f.debit_fen for f in mine)
    assert by_kind["payment_confirmed"][1] > 0
