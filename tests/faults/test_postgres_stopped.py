"""PostgreSQL stops dead (`pg_ctl -m immediate`) for 60 s while the processor and the
ledger's consumer are at work, and comes back.

Run on purpose (`./run faults`), on the cluster of `test_broker_killed` (three brokers of
its own and a PostgreSQL on other ports). The processor does not touch the database and
goes on deciding; the ledger's consumer waits or exits, and is started again if it exits
(as the supervisor would). Then the money is accounted: every hold posted once in the
ledger, the hash chain verified, and each town's reserve in the ledger equal to what the
processor's last grant says is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from deploy.local import stack as local_stack
from schemas.towns import load_county
from services.ledger.adapters import postgres
from tests.faults.conftest import Cluster, Figures, start_service, steady_load
from tests.integration.emergency.test_faults import (
    AMOUNT_FEN,
    all_granted,
    feed,
    granted_count_reaches,
    granted_once,
    logs,
    requests_over,
)
from tests.integration.emergency.test_worker import Env, flood
from tests.integration.ledger.conftest import SEALER, LedgerDb, ledger_database

pytestmark = pytest.mark.faults

DOWN_S = 60.0
DRAIN_S = 300.0


def cluster_stack(cluster: Cluster) -> local_stack.StackInfo:
    port = int(cluster.env["RELIEF_LOCAL_PG_PORT"])
    # the cluster's roles have passwords, kept in its state folder
    passwords = local_stack.pg_passwords(Path(cluster.env["RELIEF_STATE_DIR"])) or {}
    return local_stack.StackInfo(
        kafka_bootstrap=cluster.bootstrap,
        admin_url=local_stack.pg_url(local_stack.ADMIN_ROLE, port=port, passwords=passwords),
        owner_url=local_stack.pg_url(local_stack.OWNER_ROLE, port=port, passwords=passwords),
        app_url=local_stack.pg_url(local_stack.APP_ROLE, port=port, passwords=passwords),
    )


def pg_ctl(cluster: Cluster, *args: str) -> None:
    data = Path(cluster.env["RELIEF_STATE_DIR"]) / "postgres" / "data"
    subprocess.run(
        [*local_stack.pg_as_user(), str(local_stack.pg_bin() / "pg_ctl"), "-D", str(data), *args],
        check=True,
        capture_output=True,
        timeout=120,
        cwd="/",  # its user may not enter the project's folder
    )


@pytest.fixture
async def ledger_db(cluster: Cluster) -> AsyncIterator[LedgerDb]:
    async with ledger_database(cluster_stack(cluster)) as db:
        yield db


def start_ledger(
    db: LedgerDb, env: Env, log: Path, rejected_topic: str | None = None
) -> subprocess.Popen[bytes]:
    return start_service(
        ["services.ledger", "run"],
        log,
        {
            "RELIEF_KAFKA_BOOTSTRAP": env.bootstrap,
            "RELIEF_DATABASE_URL": db.app_url,
            "RELIEF_DATABASE_OWNER_URL": db.owner_url,
            "RELIEF_LEDGER_TOPIC": env.postings,
            "RELIEF_LEDGER_REJECTED_TOPIC": rejected_topic or env.rejected,
            "RELIEF_METRICS_PORT": "0",
        },
        drop_prefix="RELIEF_LEDGER_",
    )


async def test_postgresql_stopped_dead_for_a_minute_under_load(
    cluster: Cluster,
    env: Env,
    worker: list[subprocess.Popen[bytes]],
    ledger_db: LedgerDb,
    reliability: Callable[..., Figures],
) -> None:
    towns = load_county().codes()
    n_cases = 2_000
    cases = requests_over(towns, n_cases, "pgdown")
    ledger_log = env.log.with_name("ledger.log")
    ledger = start_ledger(ledger_db, env, ledger_log)
    restarts = 0
    worker.append(env.start_worker())
    await feed(env.bootstrap, env.intake, [flood(t) for t in towns], chunk=100, pause_s=0)
    async with steady_load(
        env, cases, chunk=50, pause_s=0.2, gates={"stopped": 700}, drain_s=DRAIN_S
    ) as load:
        await granted_count_reaches(env, 300, workers=worker)
        await asyncio.to_thread(pg_ctl, cluster, "-m", "immediate", "-w", "stop")
        load.open("stopped")
        deadline = asyncio.get_running_loop().time() + DOWN_S
        while asyncio.get_running_loop().time() < deadline:
            assert worker[0].poll() is None, f"the processor exited\n{logs(env)}"
            await asyncio.sleep(1)
        await asyncio.to_thread(cluster.up)  # PostgreSQL back (Kafka is running)
        load.fault_over(caught_up=lambda backlog: all_in_ledger(ledger_db, backlog))

    wanted = {c.correlation_id for c in cases}
    decisions = await all_granted(env, wanted, DRAIN_S, worker)
    grants = await granted_once(decisions, wanted, env)
    # a new pool: the fixture's connections died with the server
    async with fresh_pool(ledger_db) as pool:
        deadline = asyncio.get_running_loop().time() + DRAIN_S
        while (n := await holds_in_book_on(pool)) < n_cases:
            assert asyncio.get_running_loop().time() < deadline, (
                f"{n} of {n_cases} holds in the ledger; its log:\n"
                f"{ledger_log.read_text(errors='replace')[-3000:]}"
            )
            if ledger.poll() is not None:  # the supervisor starts it again
                restarts += 1
                ledger = start_ledger(ledger_db, env, ledger_log)
            await asyncio.sleep(1)
        ids = [r["posting_id"] for r in await pool.fetch("SELECT posting_id FROM ledger_entries")]
        assert len(ids) == len(set(ids)), "a posting stored twice"
        report = await postgres.verify(ledger_db.app_url, SEALER)
        assert report.ok, report.problems
        balances = await postgres.reserve_balances(pool)
    reliability(
        fault="PostgreSQL stopped (pg_ctl -m immediate) for 60 s; recovery: the ledger's",
        sent=n_cases,
        accepted=wanted,
        decisions=decisions,
        recovery_s=await load.recovery_s(),
    )
    ledger.terminate()
    await asyncio.to_thread(ledger.wait, 30)
    left_after: dict[str, int] = {}
    for g in grants:  # each grant quotes the reserve before it: the lowest, minus its own
        after = int(g.figures["reserve_available_fen"]) - g.amount_fen
        left_after[g.town] = min(after, left_after.get(g.town, after))
    for town, left in left_after.items():
        assert balances[town] == left, f"{town}: ledger {balances[town]} != processor {left}"
    assert sum(g.amount_fen for g in grants) == n_cases * AMOUNT_FEN


@contextlib.asynccontextmanager
async def fresh_pool(db: LedgerDb) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db.app_url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def holds_in_book_on(pool: asyncpg.Pool) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE kind IN ('advance_granted', "
            "'escalated_advance')"
        )
    )


async def all_in_ledger(db: LedgerDb, cases: set[str]) -> bool:
    """Every case of `cases` has its hold in the ledger (False while PostgreSQL is away)."""
    try:
        conn = await asyncpg.connect(db.app_url, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        held = await conn.fetchval(
            "SELECT count(DISTINCT correlation_id) FROM ledger_entries WHERE kind IN "
            "('advance_granted', 'escalated_advance') AND correlation_id = ANY($1)",
            list(cases),
        )
        return int(held) == len(cases)
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()
