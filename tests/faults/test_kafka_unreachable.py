"""Kafka unreachable from intake for 60 s while towns keep registering urgent cases.

Run on purpose (`./run faults`), on the suite's cluster. An intake process (its
Idempotency-Keys in the cluster's PostgreSQL, as in production) takes a steady stream of
urgent cases from clients that behave as the README tells them: a 503 means the outcome
is unknown, so they wait Retry-After and send the same request with the same
Idempotency-Key, for as long as it takes. Every broker of the cluster is stopped
(SIGSTOP) for 60 s — connections neither refused nor answered, as when the network is
cut — so some records intake gave up on still land when Kafka comes back, beside their
retries. Then every case must be answered 202 once in the end, decided exactly once
(one decision id, no refusal), held exactly once, and the reserves must be in sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from deploy.local import stack as local_stack
from services.emergency.adapters.faust_app import EXIT_UNAVAILABLE
from services.intake.adapters import idempotency_store
from tests.faults.conftest import (
    ROOT,
    Cluster,
    Figures,
    cluster_database,
    cluster_frozen,
    drained_at,
)
from tests.integration.emergency.test_faults import (
    AFTER_CRASH_S,
    AMOUNT_FEN,
    Supervisor,
    all_granted,
    all_held,
    assert_reserves_in_sequence,
    feed,
    granted_count_reaches,
    granted_once,
    held_once,
    logs,
)
from tests.integration.emergency.test_worker import Env, flood
from tests.integration.intake.conftest import Topic
from tests.integration.servers import free_port
from tests.unit.intake.people import KEY_HEX, SHAOHAI, SUOZHEN, make_id, tokens_toml

pytestmark = pytest.mark.faults

OUTAGE_S = 60.0
BEFORE_S = 10.0  # requests flowing before the cut ...
AFTER_S = 15.0  # ... and after Kafka is back
CLIENTS = 6
CLIENT_PAUSE_S = 0.1  # between one client's cases: a steady stream, not a benchmark
TOKENS = {SUOZHEN: "tok-suozhen", SHAOHAI: "tok-shaohai"}


@contextlib.contextmanager
def intake_process(
    env: Env, keys_url: str, tokens: Path, extra: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """An intake process on a free port: its URL and its pid. `extra`: more settings."""
    port = free_port()
    log = env.log.with_name("intake.log")
    out = open(log, "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.intake", "serve", "--port", str(port)],
        cwd=ROOT,
        env={
            **os.environ,
            "RELIEF_KAFKA_BOOTSTRAP": env.bootstrap,
            "RELIEF_INTAKE_TOPIC": env.intake,
            "RELIEF_ID_HASH_KEY": KEY_HEX,
            "RELIEF_INTAKE_TOKENS_FILE": str(tokens),
            "RELIEF_INTAKE_KEYS_DATABASE_URL": keys_url,
            "PYTHONUNBUFFERED": "1",
            **(extra or {}),
        },
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/livez", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "intake did not start within 60 s"
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Clients:
    """Towns' clerks registering urgent cases through the API, each retrying a case with
    its own Idempotency-Key until it is answered."""

    url: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    accepted: dict[str, str] = field(default_factory=dict)  # case id -> event id
    attempts: Counter[str] = field(default_factory=Counter)
    unknown: list[str] = field(default_factory=list)  # the bodies of the 503s
    other: list[str] = field(default_factory=list)  # anything but 202 / 503 / in flight
    during_outage: int = 0
    cut: bool = False

    async def run(self, client: int) -> None:
        async with httpx.AsyncClient(timeout=40) as http:
            n = 0
            while not self.stop.is_set():
                await self.register(http, client, n)
                n += 1
                await asyncio.sleep(CLIENT_PAUSE_S)

    async def register(self, http: httpx.AsyncClient, client: int, n: int) -> None:
        town = (SUOZHEN, SHAOHAI)[n % 2]
        case_id = f"cut-{client}-{n}"
        body = {
            "town": town,
            "case_id": case_id,
            "urgency": "urgent",
            "category": "emergency",
            "household_head_id": make_id(n % 1000, date(1950, 1, 1) + timedelta(days=client)),
            "requested_fen": AMOUNT_FEN,
            "incident_id": "flood-0720",
            "reason": "房屋进水",
        }
        headers = {"Authorization": f"Bearer {TOKENS[town]}", "Idempotency-Key": case_id}
        if self.cut:
            self.during_outage += 1
        while True:
            self.attempts[case_id] += 1
            try:
                answer = await http.post(self.url + "/v1/cases", headers=headers, json=body)
            except httpx.TransportError:
                await asyncio.sleep(1)  # no answer at all: the same key again
                continue
            if answer.status_code == 202:
                first = self.accepted.setdefault(case_id, answer.json()["event_id"])
                assert first == answer.json()["event_id"]
                return
            if answer.status_code == 503:
                self.unknown.append(answer.json()["detail"])
                await asyncio.sleep(float(answer.headers["Retry-After"]))
                continue
            if answer.status_code == 409 and "still being recorded" in answer.text:
                await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
                continue
            self.other.append(f"{answer.status_code} {answer.text}")
            return


async def test_kafka_unreachable_from_intake_for_a_minute(
    cluster: Cluster,
    env: Env,
    worker: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    reliability: Callable[..., Figures],
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(tokens_toml(), encoding="utf-8")
    worker.append(env.start_worker())
    await feed(env.bootstrap, env.intake, [flood(SUOZHEN), flood(SHAOHAI)], chunk=2, pause_s=0)
    async with cluster_database(cluster, "intake") as (owner_url, app_url):
        await idempotency_store.migrate(owner_url, local_stack.APP_ROLE)
        with intake_process(env, app_url, tokens) as (url, _):
            clients = Clients(url)
            running = [asyncio.create_task(clients.run(c)) for c in range(CLIENTS)]
            # the processor cannot send either, and exits (69) after its output timeout:
            # started again as the supervisor would
            supervisor = Supervisor(env, worker, restarts_max=10)
            running.append(asyncio.create_task(supervisor.run()))
            try:
                await granted_count_reaches(env, 50, workers=worker)
                await asyncio.sleep(BEFORE_S)
                clients.cut = True
                with cluster_frozen(cluster, OUTAGE_S):
                    await asyncio.sleep(OUTAGE_S)
                clients.cut = False
                back = time.monotonic()
                backlog = asyncio.create_task(drained_at(env, set(clients.attempts), AFTER_CRASH_S))
                await asyncio.sleep(AFTER_S)
                clients.stop.set()
                await asyncio.wait_for(asyncio.gather(*running[:CLIENTS]), AFTER_CRASH_S)
                print(
                    f"{len(clients.accepted)} cases, {clients.during_outage} begun while Kafka "
                    f"was away, {len(clients.unknown)} answers 503, the last case answered "
                    f"{time.monotonic() - back:.0f} s after Kafka came back"
                )
            finally:
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
            intake_log = env.log.with_name("intake.log").read_text(errors="replace")

    assert not clients.other, f"answers other than 202 / 503: {clients.other[:5]}"
    assert clients.during_outage > 0 and clients.unknown, "no request met the outage"
    for detail in clients.unknown:  # the 503 says what the client needs to know
        assert "outcome is unknown" in detail and "same Idempotency-Key" in detail, detail
    wanted = set(clients.attempts)
    assert set(clients.accepted) == wanted, "a case never accepted"
    decisions = await all_granted(env, wanted, AFTER_CRASH_S, None)
    drained = await backlog
    reliability(
        fault="Kafka unreachable from intake for 60 s (every broker SIGSTOPped); "
        "clients retry 503s with the same key",
        sent=len(wanted),
        accepted=set(clients.accepted),
        decisions=decisions,
        recovery_s=None if drained == float("inf") else max(0.0, drained - back),
    )
    assert set(supervisor.exit_codes) <= {EXIT_UNAVAILABLE}, supervisor.exit_codes
    grants = await granted_once(decisions, wanted, env)
    assert_reserves_in_sequence(grants)
    holds = held_once(await all_held(env, wanted), wanted)
    assert sum(p.amount_fen for p in holds.values()) == len(wanted) * AMOUNT_FEN
    assert worker[-1].poll() is None, f"the last worker exited\n{logs(env)}"
    # what the log holds: each answered record at least once; a record intake gave up on
    # (503) may have landed beside its retry, the same event id twice, decided once above
    landed = Counter(
        str(r.record.event_id)
        for r in await Topic(env.bootstrap, env.intake).records()
        if r.record.correlation_id in wanted
    )
    assert set(landed) == set(clients.accepted.values())
    print(f"{sum(1 for n in landed.values() if n > 1)} records landed twice (one decision each)")
    for g in grants:  # the decision is of the record intake answered with
        assert str(g.causation_id) == clients.accepted[g.correlation_id], (
            f"{g.correlation_id}\n{intake_log[-2000:]}\n{logs(env)}"
        )
