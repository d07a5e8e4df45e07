"""The clock service SIGKILLed under load: a real Prometheus with the project's rules
says so, and the ticks resume when it is started again.

Run on purpose (`./run faults`), on the suite's cluster. A processor worker decides a
steady stream of urgent requests; the clock writes a tick into every intake partition
every 2 s; Prometheus (Debian's package) scrapes the worker's /metrics every second and
evaluates deploy/prometheus/rules/relief.yml as they are. The clock is killed: the
requests keep every town's own clock moving, but ReliefClockStale must fire for every
partition (90 s without a tick, for 30 s). Started again, its ticks reach every partition
and the alert is resolved. Then the stream is accounted as in the other stories.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.prometheus import tools
from schemas.towns import load_county
from tests.conftest import need_tool
from tests.faults.conftest import ROOT, Cluster, Figures, steady_load
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
    start_worker_with,
)
from tests.integration.emergency.test_worker import PARTITIONS, Env, flood
from tests.integration.servers import free_port

pytestmark = pytest.mark.faults

TICK_S = 2
FIRES_WITHIN_S = 90 + 30 + 30  # the rule's 90 s and `for: 30s`, and scrapes and evaluations
RESUMES_WITHIN_S = 60.0


@contextlib.contextmanager
def prometheus_scraping(metrics_port: int, tmp: Path) -> Iterator[str]:
    try:
        binary = tools.prometheus()
    except tools.ToolMissing as exc:
        need_tool(str(exc))
    config = tmp / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tools.RULES)],
                "scrape_configs": [
                    {
                        "job_name": "relief-emergency",
                        "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def start_clock(env: Env) -> subprocess.Popen[bytes]:
    out = open(env.log.with_name("clock.log"), "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(
        [sys.executable, "-m", "services.emergency", "clock", "--interval", str(TICK_S)],
        cwd=ROOT,
        env=env.vars,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


async def query(http: httpx.AsyncClient, expr: str) -> list[Any]:
    answer = await http.get("/api/v1/query", params={"query": expr})
    body = answer.json()
    assert body["status"] == "success", (expr, body)
    result: list[Any] = body["data"]["result"]
    return result


async def stale_alerts(http: httpx.AsyncClient) -> dict[str, str]:
    """ReliefClockStale by partition: its state (pending or firing)."""
    answer = await http.get("/api/v1/alerts")
    return {
        a["labels"]["partition"]: a["state"]
        for a in answer.json()["data"]["alerts"]
        if a["labels"]["alertname"] == "ReliefClockStale"
    }


async def ticks_after(http: httpx.AsyncClient, moment: float) -> set[str]:
    """The partitions whose latest tick the processor decided is later than `moment`."""
    found = await query(http, f"relief_clock_tick_timestamp_seconds > {moment}")
    return {r["metric"]["partition"] for r in found}


async def test_the_clock_killed_under_load_alerts_and_resumes(
    cluster: Cluster,
    env: Env,
    worker: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    reliability: Callable[..., Figures],
) -> None:
    towns = load_county().codes()
    n_cases = 1_800
    cases = requests_over(towns, n_cases, "clock")
    partitions = {str(p) for p in range(PARTITIONS)}
    metrics_port = free_port()
    worker.append(
        start_worker_with(env, "worker.log", RELIEF_EMERGENCY_METRICS_PORT=str(metrics_port))
    )
    clocks = [start_clock(env)]
    await feed(env.bootstrap, env.intake, [flood(t) for t in towns], chunk=100, pause_s=0)
    # about 180 s of requests: before, during and after the clock's absence
    try:
        async with contextlib.AsyncExitStack() as stack:
            load = await stack.enter_async_context(
                steady_load(env, cases, chunk=10, pause_s=1, drain_s=AFTER_CRASH_S)
            )
            prometheus = stack.enter_context(prometheus_scraping(metrics_port, tmp_path))
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=prometheus, timeout=10)
            )
            await granted_count_reaches(env, 100, workers=worker)
            deadline = time.monotonic() + 60
            while await ticks_after(http, time.time() - 10) != partitions:
                assert time.monotonic() < deadline, f"no ticks seen\n{logs(env)}"
                await asyncio.sleep(1)
            assert not await stale_alerts(http)

            clocks[0].send_signal(signal.SIGKILL)
            assert await exited(clocks[0], 10) == -signal.SIGKILL
            killed = time.monotonic()
            while (alerts := await stale_alerts(http)) != dict.fromkeys(partitions, "firing"):
                assert time.monotonic() - killed < FIRES_WITHIN_S, (
                    f"ReliefClockStale not firing for every partition: {alerts}"
                )
                assert worker[0].poll() is None, f"the worker exited\n{logs(env)}"
                await asyncio.sleep(1)
            fired_after = time.monotonic() - killed
            # the requests went on meanwhile: decided, with no tick among them
            assert load.accepted < n_cases, "the stream ended before the alert fired"

            restarted, restarted_at = time.monotonic(), time.time()
            clocks.append(start_clock(env))
            while await ticks_after(http, restarted_at) != partitions or await stale_alerts(http):
                assert time.monotonic() - restarted < RESUMES_WITHIN_S, (
                    f"ticks after the restart: {await ticks_after(http, restarted_at)}, "
                    f"alerts {await stale_alerts(http)}"
                )
                assert clocks[-1].poll() is None, "the clock exited"
                await asyncio.sleep(1)
            resumed_s = time.monotonic() - restarted
            print(
                f"ReliefClockStale fired {fired_after:.0f} s after the clock was killed; "
                f"ticks resumed and the alert cleared {resumed_s:.0f} s after its restart"
            )
    finally:
        for clock in clocks:
            if clock.poll() is None:
                clock.terminate()
                await exited(clock, 10)

    wanted = {c.correlation_id for c in cases}
    decisions = await all_granted(env, wanted, AFTER_CRASH_S, worker)
    reliability(
        fault="the clock service SIGKILLed until ReliefClockStale fired, restarted; "
        "recovery: ticks on every partition and the alert resolved",
        sent=n_cases,
        accepted=wanted,
        decisions=decisions,
        recovery_s=resumed_s,
    )
    grants = await granted_once(decisions, wanted, env)
    assert_reserves_in_sequence(grants)
    holds = held_once(await all_held(env, wanted), wanted)
    assert sum(p.amount_fen for p in holds.values()) == n_cases * AMOUNT_FEN
