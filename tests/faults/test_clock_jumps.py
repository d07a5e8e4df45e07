"""The host clock of intake, the processor and the clock service jumps 2 hours forward,
then 1 hour back, while towns register and pay urgent cases through the API.

Run on purpose (`./run faults`), on the suite's cluster. The three processes run under
libfaketime (LD_PRELOAD, Debian's `libfaketime`): their wall clock reads the offset in a
file on every call (`FAKETIME_NO_CACHE=1`), so the story moves it while they run; their
monotonic clock is left alone, as a real step of the host clock (NTP, an operator's
`date -s`) leaves CLOCK_MONOTONIC alone. The brokers' clock does not move.

What the jump may change, and what it may not (docs/design.md "one clock for every
deadline"):

- intake stamps `occurred_at` from its own clock: that moves with the jump, and the story
  checks it did (so the fault really reached the processes);
- every deadline is `recorded_at` (the broker's LogAppendTime) + the policy's period, and
  is judged on the broker's time of ticks and payments: no deadline moves, no warning
  or breach comes early, none twice. The story runs with a 2-hour relief deadline and
  its warning 1 hour before, so a processor that judged on its own clock would warn
  and breach during the jump; with the broker's clock none of it falls due;
- the processor's records carry the broker's time too: Kafka 4 refuses a record stamped
  more than an hour ahead of the broker (`log.message.timestamp.after.max.ms`), so a
  processor stamping outputs with its own clock could not send during the jump;
- a retry with the same Idempotency-Key still gets the first answer (the keys expire on
  PostgreSQL's clock, not intake's).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local import stack as local_stack
from schemas import decisions as d
from services.intake.adapters import idempotency_store
from tests.faults.conftest import (
    ROOT,
    Cluster,
    Figures,
    cluster_database,
    drained_at,
)
from tests.faults.test_kafka_unreachable import intake_process
from tests.integration.emergency.test_faults import (
    AFTER_CRASH_S,
    AMOUNT_FEN,
    assert_reserves_in_sequence,
    feed,
    granted_count_reaches,
    granted_once,
    logs,
    start_worker_with,
)
from tests.integration.emergency.test_worker import Env, consume_until, flood
from tests.integration.intake.conftest import Topic
from tests.unit.intake.people import SHAOHAI, SUOZHEN, make_id, tokens_toml

pytestmark = pytest.mark.faults

DEADLINE = timedelta(hours=2)  # the story's R5 period: the jump crosses it ...
WARNING_LEAD = timedelta(hours=1)  # ... and its warning
PHASES: list[tuple[str, timedelta, float]] = [  # name, the hosts' clock offset, how long
    ("before", timedelta(0), 15.0),
    ("ahead 2 h", timedelta(hours=2), 25.0),
    ("back 1 h", timedelta(hours=1), 25.0),
]
AFTER_S = 10.0  # the load goes on this long after the last jump
CLIENTS = 4
CLIENT_PAUSE_S = 0.2
TOKENS = {SUOZHEN: "tok-suozhen", SHAOHAI: "tok-shaohai"}
TICK_S = 2
SKEW_S = 30.0  # how far a stamp may be from its phase's offset (requests in flight)


def faketime_lib() -> str:
    """libfaketime: `./run faults` installs it; without it this story cannot be told, and
    it fails rather than skip."""
    candidates = [os.environ.get("RELIEF_FAKETIME_LIB", "")]
    candidates += [str(p) for p in Path("/usr/lib").glob("*/faketime/libfaketime.so.1")]
    candidates.append("/usr/lib/faketime/libfaketime.so.1")
    for c in candidates:
        if c and Path(c).is_file():
            return c
    pytest.fail("libfaketime is missing: `./run faults` installs it (Debian: libfaketime)")


class HostClock:
    """The offset every process started with `vars` reads on each call of its wall clock."""

    def __init__(self, folder: Path) -> None:
        self.file = folder / "faketime-offset"
        self.set(timedelta(0))
        self.vars = {
            "LD_PRELOAD": faketime_lib(),
            "FAKETIME_TIMESTAMP_FILE": str(self.file),
            "FAKETIME_NO_CACHE": "1",  # the new offset at once, not after a cache period
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # a stepped host clock leaves it alone
            "NO_FAKE_STAT": "1",  # files keep the times they were written with
        }

    def set(self, offset: timedelta) -> None:
        tmp = self.file.with_suffix(".new")
        tmp.write_text(f"{int(offset.total_seconds()):+d}\n")
        tmp.replace(self.file)  # a process never reads half a file


def policy_file(folder: Path) -> Path:
    """The county's policy with a 2-hour relief deadline warned 1 hour before."""
    text = (ROOT / "schemas" / "config" / "huantai.toml").read_text(encoding="utf-8")
    old = ("relief_deadline_h = 24 ", "relief_warning_lead_h = 4 ")
    assert all(o in text for o in old), "the policy file's R5 figures moved"
    text = text.replace(old[0], f"relief_deadline_h = {DEADLINE // timedelta(hours=1)} ")
    text = text.replace(old[1], f"relief_warning_lead_h = {WARNING_LEAD // timedelta(hours=1)} ")
    path = folder / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def preloaded(pid: int, within_s: float = 10.0) -> bool:
    """libfaketime is mapped into the process (a process just started may still be in
    its dynamic loader: asked again until `within_s`)."""
    deadline = time.monotonic() + within_s
    while "libfaketime" not in await asyncio.to_thread(Path(f"/proc/{pid}/maps").read_text):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


@contextlib.contextmanager
def clock_service(env: Env, extra: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    out = open(env.log.with_name("clock.log"), "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.emergency", "clock", "--interval", str(TICK_S)],
        cwd=ROOT,
        env={**env.vars, **extra},
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Sent:
    phase: str  # the phase when it was sent and when it was answered, if the same
    event_id: str
    recorded_at: datetime


@dataclass
class Clerks:
    """Towns' clerks registering urgent cases and confirming each one's payment at once
    (it lands after the case in the town's partition), retrying a 503 with the same key."""

    url: str
    phase: Callable[[], str]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    cases: dict[str, Sent] = field(default_factory=dict)
    payments: dict[str, Sent] = field(default_factory=dict)
    attempted: set[str] = field(default_factory=set)
    bodies: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)

    async def run(self, client: int) -> None:
        async with httpx.AsyncClient(timeout=40) as http:
            n = 0
            while not self.stop.is_set():
                town = (SUOZHEN, SHAOHAI)[n % 2]
                case_id = f"jump-{client}-{n}"
                self.attempted.add(case_id)
                body = {
                    "town": town,
                    "case_id": case_id,
                    "urgency": "urgent",
                    "category": "emergency",
                    "household_head_id": make_id(n % 1000, datetime(1950, 1, 1 + client).date()),
                    "requested_fen": AMOUNT_FEN,
                    "incident_id": "flood-0720",
                    "reason": "房屋进水",
                }
                self.bodies[case_id] = (town, body)
                if (sent := await self.write(http, town, "/v1/cases", case_id, body)) is None:
                    return
                self.cases[case_id] = sent
                payment = {"town": town, "amount_fen": AMOUNT_FEN, "bank_reference": f"B{n}"}
                path = f"/v1/cases/{case_id}/payments"
                if (paid := await self.write(http, town, path, f"pay-{case_id}", payment)) is None:
                    return
                self.payments[case_id] = paid
                n += 1
                await asyncio.sleep(CLIENT_PAUSE_S)

    async def write(
        self, http: httpx.AsyncClient, town: str, path: str, key: str, body: dict[str, Any]
    ) -> Sent | None:
        headers = {"Authorization": f"Bearer {TOKENS[town]}", "Idempotency-Key": key}
        while True:
            phase = self.phase()
            try:
                answer = await http.post(self.url + path, headers=headers, json=body)
            except httpx.TransportError:
                await asyncio.sleep(1)
                continue
            if answer.status_code == 202:
                got = answer.json()
                same = phase if self.phase() == phase else "between"
                return Sent(same, got["event_id"], datetime.fromisoformat(got["recorded_at"]))
            if answer.status_code == 503:
                await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
                continue
            self.other.append(f"{path}: {answer.status_code} {answer.text}")
            return None


async def test_the_host_clock_jumps_two_hours_forward_and_one_back(
    cluster: Cluster,
    env: Env,
    worker: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    reliability: Callable[..., Figures],
) -> None:
    host = HostClock(tmp_path)
    policy = policy_file(tmp_path)
    faked = {**host.vars, "RELIEF_POLICY_FILE": str(policy)}
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(tokens_toml(), encoding="utf-8")
    worker.append(start_worker_with(env, "worker.log", **faked))
    await feed(env.bootstrap, env.intake, [flood(SUOZHEN), flood(SHAOHAI)], chunk=2, pause_s=0)
    phase = PHASES[0][0]
    jumped_back = 0.0
    backlog: asyncio.Task[float] | None = None
    async with cluster_database(cluster, "intake") as (owner_url, app_url):
        await idempotency_store.migrate(owner_url, local_stack.APP_ROLE)
        with (
            intake_process(env, app_url, tokens, extra=faked) as (url, intake_pid),
            clock_service(env, faked) as clock,
        ):
            processes = {"intake": intake_pid, "processor": worker[0].pid, "clock": clock.pid}
            for name, pid in processes.items():
                assert await preloaded(pid), f"libfaketime is not loaded in the {name} process"
            clerks = Clerks(url, lambda: phase)
            running = [asyncio.create_task(clerks.run(c)) for c in range(CLIENTS)]
            try:
                await granted_count_reaches(env, 20, workers=worker)
                for name, offset, lasts_s in PHASES:
                    phase = name
                    host.set(offset)
                    if name == PHASES[-1][0]:  # the last jump: the fault is over
                        jumped_back = time.monotonic()
                        wanted_by_then = set(clerks.attempted)
                        backlog = asyncio.create_task(
                            drained_at(env, wanted_by_then, AFTER_CRASH_S)
                        )
                    await asyncio.sleep(lasts_s)
                    assert worker[0].poll() is None, f"the processor exited\n{logs(env)}"
                    assert clock.poll() is None, "the clock service exited"
                await asyncio.sleep(AFTER_S)
                clerks.stop.set()
                await asyncio.wait_for(asyncio.gather(*running), AFTER_CRASH_S)
                # a retry of the first cases, with their keys, after both jumps: the first
                # answer again (the keys live on PostgreSQL's clock)
                async with httpx.AsyncClient(timeout=40) as http:
                    for case_id in [f"jump-{c}-0" for c in range(CLIENTS)]:
                        town, body = clerks.bodies[case_id]
                        again = await clerks.write(http, town, "/v1/cases", case_id, body)
                        assert again is not None, clerks.other
                        assert again.event_id == clerks.cases[case_id].event_id, case_id
            finally:
                clerks.stop.set()
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
                host.set(timedelta(0))

    wanted = set(clerks.attempted)

    def all_judged(got: list[Any]) -> bool:
        met = {r.correlation_id for r in got if isinstance(r, d.DeadlineMet)}
        return wanted <= met

    decisions = await consume_until(env.bootstrap, env.decisions, all_judged, AFTER_CRASH_S)
    assert backlog is not None
    drained = await backlog
    reliability(
        fault="host clock of intake, processor and clock +2 h, then back 1 h (libfaketime)",
        sent=len(wanted),
        accepted=set(clerks.cases),
        decisions=decisions,
        recovery_s=None if drained == float("inf") else max(0.0, drained - jumped_back),
    )

    assert not clerks.other, f"answers other than 202 / 503: {clerks.other[:5]}"
    assert set(clerks.cases) == wanted == set(clerks.payments), "a case or payment not accepted"
    grants = await granted_once(decisions, wanted, env)
    assert_reserves_in_sequence(grants)
    assert worker[0].poll() is None, f"the processor exited\n{logs(env)}"

    # no deadline moved: each is the broker's stamp of its request + the period (R5, P1)
    for g in grants:
        received = clerks.cases[g.correlation_id].recorded_at
        assert g.due_at == received + DEADLINE, (g.correlation_id, g.due_at, received)
        assert g.figures["received_at"] == received.isoformat(), g.figures
    # nothing warned or breached (none fell due on the broker's clock), nothing twice
    early = [r for r in decisions if isinstance(r, d.DeadlineWarned | d.DeadlineBreached)]
    assert not early, f"judged on the wrong clock: {early[:5]}"
    met: dict[str, set[Any]] = defaultdict(set)
    for r in decisions:
        if isinstance(r, d.DeadlineMet):
            assert r.deadline is d.DeadlineKind.RELIEF_24H, r
            met[r.correlation_id].add(r.event_id)
            paid_at = clerks.payments[r.correlation_id].recorded_at
            assert paid_at <= r.due_at == clerks.cases[r.correlation_id].recorded_at + DEADLINE
    assert set(met) == wanted and all(len(ids) == 1 for ids in met.values()), "met twice"
    paid = Counter(r.correlation_id for r in decisions if isinstance(r, d.ReliefPaid))
    assert set(paid) == wanted, "a payment not decided"

    # the jump reached the processes: intake's occurred_at moved with each phase
    landed = {
        str(r.record.event_id): r.record
        for r in await Topic(env.bootstrap, env.intake).records()
        if r.record.correlation_id in wanted
    }
    seen: dict[str, int] = Counter()
    for case_id, sent in clerks.cases.items():
        offsets = {name: offset for name, offset, _ in PHASES}
        if sent.phase not in offsets:
            continue  # answered across a jump
        record = landed[sent.event_id]
        assert record.recorded_at is not None
        skew = record.occurred_at - record.recorded_at - offsets[sent.phase]
        assert abs(skew.total_seconds()) < SKEW_S, (case_id, sent.phase, skew)
        seen[sent.phase] += 1
    assert all(seen[name] > 0 for name, _, _ in PHASES), f"cases per phase: {seen}"
    print(
        f"{len(wanted)} cases registered and paid across the jumps ({dict(seen)}); "
        f"every deadline at the broker's stamp + {DEADLINE}, none warned or breached"
    )
