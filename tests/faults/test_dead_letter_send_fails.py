"""The ledger must dead-letter bad records while Kafka will not take its dead letters.

Run on purpose (`./run faults`), on the suite's cluster. The processor decides a steady
stream and the ledger's consumer stores its postings in the cluster's PostgreSQL. The
ledger's dead-letter topic needs every replica in sync (`min.insync.replicas=3`), so
when a broker is SIGKILLed the postings can still be read but no dead letter can be
written: Kafka is away for exactly that send. Bad records are then slipped into the
postings topic among the good ones. The ledger may not step over them (it stores its
position only after their dead letters are acknowledged): it waits on the send (its
producer retries past its request timeout), or exits and is started again as the
supervisor would; no dead letter may appear while the broker is away. Once the broker
is back: every bad record dead-lettered (by its derived id: a re-sent one is the same
letter), every good posting stored once, the ledger's positions at the end of the topic,
the chain verified, and each town's reserve in the ledger equal to what the processor's
grants leave.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable

import pytest

from schemas.towns import load_county
from services.ledger.adapters import postgres
from tests.faults.conftest import Cluster, Figures
from tests.faults.dead_letters import (
    dead_letters,
    end_offsets,
    refuse_dead_letters,
    restart_if_exited,
    strict_topic,
)
from tests.faults.test_postgres_stopped import (
    all_in_ledger,
    cluster_stack,
    fresh_pool,
    holds_in_book_on,
    start_ledger,
)
from tests.integration.emergency.test_faults import (
    AFTER_CRASH_S,
    AMOUNT_FEN,
    all_granted,
    granted_once,
    requests_over,
)
from tests.integration.emergency.test_worker import Env
from tests.integration.ledger.conftest import SEALER, ledger_database

pytestmark = pytest.mark.faults

BAD = [b"{not json", b'{"type": "Posting"}', b"\xff\xfe", b"[]", b'{"type": "Nothing"}']


async def test_dead_letters_refused_by_kafka_under_load_skip_nothing(
    cluster: Cluster,
    env: Env,
    worker: list[subprocess.Popen[bytes]],
    consumers: list[subprocess.Popen[bytes]],
    reliability: Callable[..., Figures],
) -> None:
    towns = load_county().codes()
    n_cases = 2_000
    cases = requests_over(towns, n_cases, "dlq")
    dlq = f"{env.rejected}.ledger"
    await strict_topic(env.bootstrap, dlq)
    async with ledger_database(cluster_stack(cluster)) as ledger_db:
        ledger_log = env.log.with_name("ledger.log")

        def ledger() -> subprocess.Popen[bytes]:
            return start_ledger(ledger_db, env, ledger_log, rejected_topic=dlq)

        ledgers = consumers
        ledgers.append(ledger())
        refused = await refuse_dead_letters(
            cluster,
            env,
            worker,
            towns=towns,
            cases=cases,
            dlq=dlq,
            onto=env.postings,
            bad=BAD,
            consumers=ledgers,
            start=ledger,
            caught_up=lambda backlog: all_in_ledger(ledger_db, backlog),
        )
        exits = refused.exits

        wanted = {c.correlation_id for c in cases}
        decisions = await all_granted(env, wanted, AFTER_CRASH_S, worker)
        grants = await granted_once(decisions, wanted, env)
        ends = await end_offsets(env.bootstrap, env.postings)
        async with fresh_pool(ledger_db) as pool:
            deadline = asyncio.get_running_loop().time() + AFTER_CRASH_S
            while True:
                positions = await postgres.LedgerStore(pool, SEALER).positions(env.postings)
                if positions == ends and await holds_in_book_on(pool) >= n_cases:
                    break
                assert asyncio.get_running_loop().time() < deadline, (
                    f"ledger at {positions} of {ends}; its log:\n"
                    f"{ledger_log.read_text(errors='replace')[-3000:]}"
                )
                restart_if_exited(ledgers, ledger, exits)
                await asyncio.sleep(1)
            assert await holds_in_book_on(pool) == n_cases
            ids = [
                r["posting_id"] for r in await pool.fetch("SELECT posting_id FROM ledger_entries")
            ]
            assert len(ids) == len(set(ids)), "a posting stored twice"
            report = await postgres.verify(ledger_db.app_url, SEALER)
            assert report.ok, report.problems
            balances = await postgres.reserve_balances(pool)
        reliability(
            fault="the ledger's dead letters refused (a broker of their topic SIGKILLed for "
            "45 s); recovery: the ledger's",
            sent=n_cases,
            accepted=wanted,
            decisions=decisions,
            recovery_s=await refused.load.recovery_s(),
        )
        ledgers[-1].terminate()
        await asyncio.to_thread(ledgers[-1].wait, 30)

    letters = await dead_letters(env.bootstrap, dlq)
    by_id = {r.rejected_id: r for r in letters}
    assert len(by_id) == len(BAD), f"{len(by_id)} bad records dead-lettered of {len(BAD)}"
    assert {r.source_topic for r in by_id.values()} == {env.postings}
    assert sorted(r.raw_length for r in by_id.values()) == sorted(len(b) for b in BAD)
    left_after: dict[str, int] = {}
    for g in grants:  # each grant quotes the reserve before it: the lowest, minus its own
        after = int(g.figures["reserve_available_fen"]) - g.amount_fen
        left_after[g.town] = min(after, left_after.get(g.town, after))
    for town, left in left_after.items():
        size = load_county().town(town).reserve_fen
        assert 0 <= balances[town] <= size
        assert balances[town] == left, f"{town}: ledger {balances[town]} != processor {left}"
    assert sum(g.amount_fen for g in grants) == n_cases * AMOUNT_FEN
    print(
        f"{n_cases} cases, {len(BAD)} bad postings; the ledger exited {exits} while its "
        f"dead letters were refused, {len(letters)} letters sent for {len(by_id)} records"
    )
