"""A processor worker SIGKILLed five times in a row while requests stream in.

Run on purpose (`./run faults`), on the suite's cluster (three brokers of its own). One
worker decides a steady stream over every town; at random moments (the seed is printed,
so a failure can be replayed) it is killed with SIGKILL, mid-batch or not, and started
again a second later with the same data folder, as the supervisor would. Each new worker
waits out its predecessor's session in the group before it is given the partitions, then
rebuilds from its RocksDB copy and the changelog. After the fifth kill the stream is let
run to its end; then every request must be decided exactly once, every hold posted
exactly once, and each town's reserve figures must form one unbroken sequence of holds.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from schemas.towns import load_county
from tests.faults.conftest import Cluster, Figures, steady_load
from tests.integration.emergency.test_faults import (
    AFTER_CRASH_S,
    AMOUNT_FEN,
    all_granted,
    all_held,
    assert_reserves_in_sequence,
    exited,
    feed,
    granted_count_reaches,
    granted_once,
    held_once,
    logs,
    requests_over,
)
from tests.integration.emergency.test_worker import Env, flood

pytestmark = pytest.mark.faults

KILLS = 5
BETWEEN_KILLS_S = (3.0, 12.0)  # a kill comes this long after the worker was started
RESTART_AFTER_S = 1.0  # the supervisor's first backoff


async def test_a_worker_killed_five_times_in_a_row_under_load(
    cluster: Cluster,
    env: Env,
    worker: list[subprocess.Popen[bytes]],
    reliability: Callable[..., Figures],
) -> None:
    seed = int(time.time())
    print(f"kill moments from random seed {seed}")
    rng = random.Random(seed)
    towns = load_county().codes()
    n_cases = 3_000
    cases = requests_over(towns, n_cases, "killed")
    worker.append(env.start_worker())
    await feed(env.bootstrap, env.intake, [flood(t) for t in towns], chunk=100, pause_s=0)
    # about 60 s of requests (25 every 0.5 s), so every kill lands in the middle of them
    async with steady_load(env, cases, chunk=25, pause_s=0.5, drain_s=AFTER_CRASH_S) as load:
        await granted_count_reaches(env, 100, workers=worker)
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(*BETWEEN_KILLS_S))
            victim = worker[-1]
            assert victim.poll() is None, f"the worker exited by itself\n{logs(env)}"
            victim.send_signal(signal.SIGKILL)
            assert await exited(victim, 10) == -signal.SIGKILL
            await asyncio.sleep(RESTART_AFTER_S)
            worker.append(env.start_worker())
        load.fault_over()  # the last worker started

    wanted = {c.correlation_id for c in cases}
    decisions = await all_granted(env, wanted, AFTER_CRASH_S, [worker[-1]])
    reliability(
        fault=f"a processor worker SIGKILLed {KILLS} times in a row, restarted after 1 s",
        sent=n_cases,
        accepted=wanted,
        decisions=decisions,
        recovery_s=await load.recovery_s(),
    )
    grants = await granted_once(decisions, wanted, env)
    assert_reserves_in_sequence(grants)
    holds = held_once(await all_held(env, wanted), wanted)
    assert sum(p.amount_fen for p in holds.values()) == n_cases * AMOUNT_FEN
    assert worker[-1].poll() is None, f"the last worker exited\n{logs(env)}"
