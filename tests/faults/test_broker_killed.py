"""A three-broker Kafka cluster loses a broker while requests stream through the processor.

Run on purpose (`./run faults`): it starts a cluster of its own (three KRaft nodes on other
ports, in a temporary state folder), leaving the suite's single broker alone.

Topics have three replicas and min.insync.replicas=2, the processor's changelog too. While
a steady stream of urgent requests is being decided, the broker leading intake partition 0
is SIGKILLed, the stream goes on, and the broker is started again. Then every request must
be decided exactly once, every hold posted exactly once, and each town's reserve figures
must form one unbroken sequence of holds (no batch applied twice or lost).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable

import pytest

from deploy.local import stack as local_stack
from schemas.towns import load_county
from tests.faults.conftest import Cluster, Figures, steady_load
from tests.integration.emergency.test_faults import (
    AMOUNT_FEN,
    all_granted,
    all_held,
    assert_reserves_in_sequence,
    feed,
    granted_count_reaches,
    granted_once,
    held_once,
    logs,
    requests_over,
)
from tests.integration.emergency.test_worker import Env, flood

pytestmark = pytest.mark.faults

DRAIN_S = 240.0


async def test_the_leader_of_a_partition_killed_and_restarted_under_load(
    cluster: Cluster,
    env: Env,
    worker: list[subprocess.Popen[bytes]],
    reliability: Callable[..., Figures],
) -> None:
    towns = load_county().codes()
    n_cases = 3_000
    cases = requests_over(towns, n_cases, "broker")
    worker.append(env.start_worker())
    await feed(env.bootstrap, env.intake, [flood(t) for t in towns], chunk=100, pause_s=0)
    gates = {"killed": 1_000, "restarted": 2_000}
    async with steady_load(env, cases, chunk=50, pause_s=0.2, gates=gates, drain_s=DRAIN_S) as load:
        await granted_count_reaches(env, 300, workers=worker)
        leaders = await local_stack.partition_leaders(env.bootstrap, [env.intake])
        victim = leaders[env.intake][0]
        pid = cluster.pid(victim)
        assert pid is not None, f"broker {victim} leads partition 0 but does not run"
        os.killpg(pid, signal.SIGKILL)
        load.open("killed")
        await asyncio.sleep(15)  # requests keep coming while a broker is missing
        assert worker[0].poll() is None, f"the worker exited\n{logs(env)}"
        await asyncio.to_thread(cluster.up)  # starts the node that is not running
        load.fault_over()
        load.open("restarted")

    wanted = {c.correlation_id for c in cases}
    decisions = await all_granted(env, wanted, DRAIN_S, worker)
    reliability(
        fault="the broker leading intake partition 0 SIGKILLed for 15 s, restarted",
        sent=n_cases,
        accepted=wanted,
        decisions=decisions,
        recovery_s=await load.recovery_s(),
    )
    grants = await granted_once(decisions, wanted, env)
    assert_reserves_in_sequence(grants)
    holds = held_once(await all_held(env, wanted), wanted)
    assert sum(p.amount_fen for p in holds.values()) == n_cases * AMOUNT_FEN
