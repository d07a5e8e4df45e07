"""A processor worker added, then the first one removed, while requests stream in.

Run on purpose (`./run faults`), on the suite's cluster (three brokers of its own). One
worker decides a steady stream over every town. A second worker, with an empty data folder
of its own, joins the group and is given part of the partitions (it rebuilds their state
from the changelogs, or holds it warm as their standby). Once it decides, the *first* worker
is stopped (SIGTERM, as a scale-down does): the joiner takes every partition over, while
requests keep coming. Partitions move twice under load; then every request must be decided
exactly once, every hold posted exactly once, and each town's reserve figures must form one
unbroken sequence of holds.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable

import pytest

from schemas.towns import load_county
from tests.faults.conftest import Cluster, Figures, steady_load
from tests.integration.emergency.test_faults import (
    AFTER_CRASH_S,
    STOPPED_S,
    active_intake_partitions,
    all_granted,
    exited,
    feed,
    granted_and_held_once,
    granted_count_reaches,
    logs,
    requests_over,
    second_worker_joined,
)
from tests.integration.emergency.test_worker import Env, flood

pytestmark = pytest.mark.faults

DECIDING_TOGETHER_S = 8.0  # both workers deciding their partitions, requests still coming


async def test_a_worker_added_and_the_first_removed_under_load(
    cluster: Cluster,
    env: Env,
    worker: list[subprocess.Popen[bytes]],
    reliability: Callable[..., Figures],
) -> None:
    towns = load_county().codes()
    n_cases = 3_000
    cases = requests_over(towns, n_cases, "scaled")
    first = env.start_worker()
    worker.append(first)
    await feed(env.bootstrap, env.intake, [flood(t) for t in towns], chunk=100, pause_s=0)
    # about 60 s of requests (25 every 0.5 s): the joining and the leaving both land in them
    async with steady_load(env, cases, chunk=25, pause_s=0.5, drain_s=AFTER_CRASH_S) as load:
        await granted_count_reaches(env, 100, workers=[first])
        second, url = await second_worker_joined(env, first, worker)
        await asyncio.sleep(DECIDING_TOGETHER_S)
        assert second.poll() is None, f"the second worker exited\n{logs(env)}"
        first.send_signal(signal.SIGTERM)
        code = await exited(first, STOPPED_S)
        assert code == 0, f"the first worker did not stop cleanly: {code}\n{logs(env)}"
        load.fault_over()  # the partitions moved the second time

    wanted = {c.correlation_id for c in cases}
    decisions = await all_granted(env, wanted, AFTER_CRASH_S, [second])
    reliability(
        fault="a processor worker added mid-stream (empty data folder), then the first "
        "one stopped (SIGTERM): partitions moved twice",
        sent=n_cases,
        accepted=wanted,
        decisions=decisions,
        recovery_s=await load.recovery_s(),
    )
    await granted_and_held_once(decisions, wanted, env)
    held = await active_intake_partitions(env.bootstrap, env)
    assert list(held) == [url], f"the second worker should hold every partition: {held}"
    assert second.poll() is None, f"the second worker exited\n{logs(env)}"
