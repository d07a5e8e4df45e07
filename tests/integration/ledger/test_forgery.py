"""A row forged with the service role is caught (real PostgreSQL, the service's own role).

The service role may INSERT, and the hash chain is unkeyed: a forger can append an entry
that chains perfectly, a position that makes the writer skip postings, or an alert that
makes a real posting look like a duplicate. None of them carries the writer's seal (an
HMAC under a key no database role holds), so `verify` names each one, and the writer
neither builds on a forged row nor drops a real posting because of one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import date, datetime

import asyncpg
import pytest

from relief_platform.secrets import Sealer
from schemas.envelope import CST
from services.ledger.adapters import postgres
from services.ledger.domain.entries import IncomingPosting, make_entry
from services.ledger.domain.heads import head_document, parse_head_document
from services.ledger.domain.verify import BAD_SEAL
from tests.integration.ledger.conftest import SEALER, LedgerDb
from tests.unit.ledger.stories import SUOZHEN, flood, granted, incoming

pytestmark = pytest.mark.integration

TOPIC = "t"
# the forger's best guess at a key: anything but the writer's
WRONG = Sealer(b"\x07" * 32)


async def store(db: LedgerDb, postings: list[IncomingPosting]) -> postgres.BatchResult:
    last = max(p.source.offset for p in postings) + 1
    return await postgres.LedgerStore(db.pool, SEALER).store_batch(postings, {(TOPIC, 0): last})


async def forge_entry(db: LedgerDb, posting: IncomingPosting) -> None:
    """Append `posting` to its town's chain with plain INSERTs as the service role: the
    right place, the right prev_hash, a correct unkeyed hash, balanced lines."""
    head = await db.pool.fetchrow(
        "SELECT chain_seq, hash FROM ledger_entries WHERE chain = $1 "
        "ORDER BY chain_seq DESC LIMIT 1",
        posting.town,
    )
    assert head is not None
    e = make_entry(posting, int(head["chain_seq"]) + 1, bytes(head["hash"]))
    async with db.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO ledger_entries (posting_id, chain, chain_seq, kind, town, "
            "correlation_id, causation_id, occurred_at, memo, prev_hash, hash, source_topic, "
            "source_partition, source_offset, seal) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, 0, $13)",
            e.posting_id,
            e.chain,
            e.chain_seq,
            e.kind,
            e.town,
            e.correlation_id,
            e.causation_id,
            e.occurred_at,
            e.memo,
            e.prev_hash,
            e.hash,
            TOPIC,
            WRONG.seal("ledger.entry.v1", e.hash),
        )
        await conn.execute(  # one statement: the balanced check sees the posting whole
            "INSERT INTO ledger_lines (posting_id, line_no, account, side, amount_fen) "
            "SELECT $1, n, a, s, f FROM unnest($2::smallint[], $3::text[], $4::text[], "
            "$5::bigint[]) AS l(n, a, s, f)",
            e.posting_id,
            list(range(1, len(e.lines) + 1)),
            [line.account for line in e.lines],
            [line.side for line in e.lines],
            [line.amount_fen for line in e.lines],
        )


async def test_an_entry_forged_with_the_app_role_is_named_and_never_built_on(
    ledger_db: LedgerDb,
) -> None:
    story = [incoming(p, i) for i, p in enumerate(flood(10, towns=(SUOZHEN,)))]
    await store(ledger_db, story)
    assert (await postgres.verify(ledger_db.app_url, SEALER)).ok
    theft = incoming(granted(SUOZHEN, 900, 99_900), 1_000)
    await forge_entry(ledger_db, theft)

    report = await postgres.verify(ledger_db.app_url, SEALER)
    assert not report.ok
    (problem,) = report.problems
    assert problem.posting_id == theft.posting_id
    assert "forged" in problem.reason

    # the next real posting of that town is not chained onto the forgery
    honest = incoming(granted(SUOZHEN, 901, 100), 1_001)
    with pytest.raises(postgres.LedgerTamperedError, match=str(theft.posting_id)):
        await store(ledger_db, [honest])
    assert (
        await ledger_db.pool.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE posting_id = $1", honest.posting_id
        )
        == 0
    )

    # finance's command says the same and fails (exit 1)
    env = {**os.environ, "RELIEF_DATABASE_URL": ledger_db.app_url}
    env.pop("RELIEF_LEDGER_CHAIN_KEY", None)  # the development key, as SEALER
    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.ledger", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert str(theft.posting_id) in cli.stdout


async def test_a_position_forged_with_the_app_role_skips_nothing_and_is_named(
    ledger_db: LedgerDb,
) -> None:
    story = [incoming(p, i) for i, p in enumerate(flood(5, towns=(SUOZHEN,)))]
    await store(ledger_db, story)
    real = await postgres.LedgerStore(ledger_db.pool, SEALER).positions(TOPIC)
    assert real == {0: len(story)}
    await ledger_db.pool.execute(
        "INSERT INTO ledger_positions (topic, partition, next_offset, seal) "
        "VALUES ($1, 0, 1000000, $2)",
        TOPIC,
        WRONG.seal("ledger.position.v1", b'["t",0,1000000]'),
    )
    # the writer resumes where it really was: no posting skipped
    assert await postgres.LedgerStore(ledger_db.pool, SEALER).positions(TOPIC) == real
    report = await postgres.verify(ledger_db.app_url, SEALER)
    assert [p.reason for p in report.problems] == [f"position {TOPIC}[0] -> 1000000: {BAD_SEAL}"]


async def test_an_alert_forged_with_the_app_role_never_makes_a_real_posting_a_duplicate(
    ledger_db: LedgerDb,
) -> None:
    story = [incoming(p, i) for i, p in enumerate(flood(5, towns=(SUOZHEN,)))]
    await store(ledger_db, story)
    coming = incoming(granted(SUOZHEN, 700, 1_000), 500)  # not yet delivered
    await ledger_db.pool.execute(
        """INSERT INTO ledger_alerts (posting_id, town, kind, reason, account, balance_fen,
               change_fen, occurred_at, posting, source_topic, source_partition,
               source_offset, seal)
           VALUES ($1, $2, 'advance_granted', 'no money', $3, 0, -1000, $4, '{}', 't', 0, 0,
                   $5)""",
        coming.posting_id,
        SUOZHEN,
        f"town_reserve:{SUOZHEN}",
        coming.occurred_at,
        bytes(32),
    )
    report = await postgres.verify(ledger_db.app_url, SEALER)
    assert any(
        str(coming.posting_id) in p.reason and "forged" in p.reason for p in report.problems
    ), report.problems
    # delivered now: the writer stops rather than drop it as already seen
    with pytest.raises(postgres.LedgerTamperedError):
        await store(ledger_db, [coming])


async def test_a_row_without_a_seal_is_refused_by_the_database(ledger_db: LedgerDb) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await ledger_db.pool.execute(
            "INSERT INTO ledger_positions (topic, partition, next_offset) VALUES ('t', 0, 9)"
        )


# the derived figures (migrations 0005, 0008) worked out again from what is left
COVER_TRACKS_SQL = """
DELETE FROM ledger_balances;
INSERT INTO ledger_balances
SELECT account, coalesce(sum(amount_fen) FILTER (WHERE side = 'debit'), 0),
       coalesce(sum(amount_fen) FILTER (WHERE side = 'credit'), 0)
  FROM ledger_lines GROUP BY account;
DELETE FROM ledger_reserve_balances;
INSERT INTO ledger_reserve_balances
SELECT account, sum(CASE side WHEN 'debit' THEN amount_fen ELSE -amount_fen END)
  FROM ledger_lines WHERE account LIKE 'town\\_reserve:%' GROUP BY account;
DELETE FROM ledger_day_figures;
INSERT INTO ledger_day_figures
SELECT ledger_cst_day(e.occurred_at), e.town, e.kind, count(*),
       coalesce(sum(x.debit_fen), 0), coalesce(sum(x.paid_fen), 0)
  FROM ledger_entries e
 CROSS JOIN LATERAL (
       SELECT sum(l.amount_fen) FILTER (WHERE l.side = 'debit') AS debit_fen,
              sum(l.amount_fen) FILTER (WHERE l.side = 'debit'
                                          AND l.account LIKE 'relief\\_paid:%') AS paid_fen
         FROM ledger_lines l WHERE l.posting_id = e.posting_id) x
 GROUP BY 1, 2, 3;
"""


async def test_a_published_head_catches_history_rewritten_by_the_owner(
    ledger_db: LedgerDb,
) -> None:
    story = [incoming(p, i) for i, p in enumerate(flood(10, towns=(SUOZHEN,)))]
    await store(ledger_db, story)
    report = await postgres.verify(ledger_db.app_url, SEALER)
    assert report.ok
    text = head_document(
        day=date(2024, 7, 1),
        published_at=datetime(2024, 7, 1, 23, 59, tzinfo=CST),
        head_hash=report.head_hash,
        chain_heads=report.chain_heads,
        chain_seqs=report.chain_seqs,
        entries_checked=report.entries_checked,
        key_id=report.key_id,
    )
    published = parse_head_document(text, "head.json")
    assert (await postgres.verify(ledger_db.app_url, SEALER, published)).ok
    # someone with the database's highest rights removes the last entry of the chain and
    # sets the running figures to match: what is left is a shorter chain, every row still
    # sealed, every figure agreeing with it — only the head kept outside the database can
    # tell
    last = await ledger_db.pool.fetchval(
        "SELECT posting_id FROM ledger_entries WHERE chain = $1 ORDER BY chain_seq DESC LIMIT 1",
        SUOZHEN,
    )
    admin = await asyncpg.connect(ledger_db.admin_url)
    try:
        await admin.execute("SET session_replication_role = replica")
        await admin.execute("DELETE FROM ledger_lines WHERE posting_id = $1", last)
        await admin.execute("DELETE FROM ledger_entries WHERE posting_id = $1", last)
        await admin.execute(COVER_TRACKS_SQL)
    finally:
        await admin.close()
    assert (await postgres.verify(ledger_db.app_url, SEALER)).ok
    rewritten = await postgres.verify(ledger_db.app_url, SEALER, published)
    assert not rewritten.ok
    assert "history was rewritten" in rewritten.problems[0].reason
    assert uuid.UUID(str(last))  # the removed entry was a real one
