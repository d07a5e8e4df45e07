"""The processor under faults, against the real broker, with real worker processes.

Three stories, each told with a stream of urgent requests that is still flowing when the
fault comes, and judged only on what came out (never on how fast):

- the broker stops acknowledging for longer than the worker's send timeout, then comes
  back; the worker exits rather than acknowledge a batch it could not send, and the test,
  acting as the supervisor, starts it again;
- a second worker joins the group, takes partitions over, and leaves again;
- a worker is killed and replaced by one with an empty data folder, which must rebuild
  every town from the changelog alone.

After each: every case decided once (one event id per case, none missing, none refused),
every hold posted once (one posting id per case), and the reserve figures each grant
quotes form the exact sequence of one town's holds, so no batch was applied twice or lost.
"""

# ruff: noqa: F811
# (pytest hands the imported fixtures `env` and `worker` to the tests as arguments of the
# same names, which ruff would read as redefinitions)

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from deploy.local import stack as local_stack
from schemas import decisions as d
from schemas.envelope import Record
from schemas.postings import AccountKind, Posting, PostingKind, Side, account
from schemas.registry import decode, encode
from schemas.towns import load_county
from services.emergency.adapters.faust_app import EXIT_UNAVAILABLE
from tests.conftest import need_tool
from tests.integration.emergency.test_worker import (
    QIFENG,
    SUOZHEN,
    TIANZHUANG,
    Env,
    consume_until,
    env,  # noqa: F401 - the fixture: unique topics, a tmp folder with worker.log
    flood,
    request,
    worker,  # noqa: F401 - the fixture: worker processes, stopped after the test
)

pytestmark = pytest.mark.integration

AMOUNT_FEN = 1_000  # far below every cap, so each grant is held on the town's own reserve
HOLD_KINDS = {PostingKind.ADVANCE_GRANTED.value, PostingKind.ESCALATED_ADVANCE.value}
# Bounded waits. A worker that replaces a dead one may wait for the dead member's session
# to expire in the group (Faust's broker_session_timeout, 60 s by default) before it is
# given the partitions, so every wait after a crash allows for that and for catching up.
STARTED_S = 120.0
AFTER_CRASH_S = 240.0
STOPPED_S = 60.0


# --------------------------------------------------------------------------- helpers


def start_worker_with(env: Env, log_name: str, **settings: str) -> subprocess.Popen[bytes]:
    """A worker like `env.start_worker()`, with some settings of its own and its own log."""
    other = copy.copy(env)
    other.vars = {**env.vars, **settings}
    other.log = env.log.with_name(log_name)
    return other.start_worker()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def logs(env: Env, tail_chars: int = 4_000) -> str:
    parts = []
    for path in sorted(env.log.parent.glob("worker*.log")):
        parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail_chars:]}")
    return "\n".join(parts)


async def exited(proc: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """The process's exit code once it has exited, or None after `timeout_s`
    (waited for in a thread, so the other tasks of the test keep running)."""
    try:
        return await asyncio.to_thread(proc.wait, timeout_s)
    except subprocess.TimeoutExpired:
        return None


async def feed(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    *,
    chunk: int,
    pause_s: float,
    gates: dict[int, asyncio.Event] | None = None,
    acked: Callable[[int], None] | None = None,
) -> None:
    """Produce `records` as a stream: `chunk` at a time, `pause_s` apart. A gate holds
    back the records from its index on until it is set, so each phase of a story has
    requests arriving during it, however fast the worker decides. `acked` is told how
    many records Kafka has acknowledged so far, after each chunk."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for start in range(0, len(records), chunk):
            for at, gate in sorted((gates or {}).items()):
                if start >= at:
                    await gate.wait()
            futures = [
                await producer.send(topic, key=r.town.encode(), value=encode(r))
                for r in records[start : start + chunk]
            ]
            await asyncio.gather(*futures)
            if acked is not None:
                acked(min(start + chunk, len(records)))
            await asyncio.sleep(pause_s)
    finally:
        await producer.stop()


async def active_intake_partitions(bootstrap: str, env: Env) -> dict[str, list[int]]:
    """The intake partitions each member of the workers' group holds as active, by the
    member's URL (Faust puts its web URL in its metadata, so workers with different web
    ports are told apart); empty while the group is rebalancing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        group = env.vars["RELIEF_EMERGENCY_APP_ID"]  # Faust's consumer group is its app id
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    held: dict[str, list[int]] = {}
    for response in responses:
        for _error, _name, state, _ptype, _protocol, members in response.groups:
            if state != "Stable":
                return {}
            for member in members:
                assignment = ConsumerProtocolMemberAssignment.decode(member[4])
                client = json.loads(zlib.decompress(assignment.user_data))
                actives = client["assignment"]["actives"].get(env.intake, [])
                held[str(client["url"])] = sorted(int(p) for p in actives)
    return held


@contextlib.asynccontextmanager
async def broker_paused() -> AsyncIterator[None]:
    """The local broker's process stopped (SIGSTOP) for the body, resumed (SIGCONT) after
    it whatever happens. The broker serves the whole test session: a detached watchdog
    resumes it too, should this process die before its `finally` runs."""
    pid = local_stack.read_pid(local_stack.kafka_dir() / "kafka.pid")
    if pid is None:
        need_tool("the Kafka broker is not a process of the local stack that a test can pause")
    watchdog = await asyncio.create_subprocess_exec(
        "sh", "-c", f"sleep 60; kill -CONT {pid}", start_new_session=True
    )
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
        os.killpg(watchdog.pid, signal.SIGKILL)  # its own group: the shell and its sleep
        await watchdog.wait()


class Supervisor:
    """What the local stack's supervisor does for a worker: start it again whenever it
    has exited, a bounded number of times, and remember how each one ended."""

    def __init__(self, env: Env, procs: list[subprocess.Popen[bytes]], restarts_max: int) -> None:
        self.env = env
        self.procs = procs
        self.restarts_max = restarts_max
        self.exit_codes: list[int] = []

    async def run(self) -> None:
        while True:
            code = self.procs[-1].poll()
            if code is not None:
                self.exit_codes.append(code)
                if len(self.exit_codes) > self.restarts_max:
                    return
                await asyncio.sleep(1.0)  # a supervisor's backoff
                self.procs.append(self.env.start_worker())
            await asyncio.sleep(0.2)


async def second_worker_joined(
    env: Env, first: subprocess.Popen[bytes], worker: list[subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], str]:
    """A second worker started beside `first`, with an empty data folder and a web port
    of its own (appended to `worker`), once the group is stable with both of them holding
    intake partitions; with its web URL, as the group's assignment names it."""
    web_port = free_port()
    second = start_worker_with(
        env,
        "worker-2.log",
        RELIEF_EMERGENCY_DATA_DIR=str(env.log.parent / "data-2"),
        RELIEF_EMERGENCY_WEB_PORT=str(web_port),
        RELIEF_EMERGENCY_METRICS_PORT="0",
    )
    worker.append(second)
    url = f"http://127.0.0.1:{web_port}"
    deadline = asyncio.get_running_loop().time() + STARTED_S
    held: dict[str, list[int]] = {}
    while not held.get(url) or len(held) != 2:
        assert asyncio.get_running_loop().time() < deadline, (
            f"the second worker never held a partition: {held}\n{logs(env)}"
        )
        assert second.poll() is None, f"the second worker exited\n{logs(env)}"
        assert first.poll() is None, f"the first worker exited\n{logs(env)}"
        await asyncio.sleep(0.5)
        held = await active_intake_partitions(env.bootstrap, env)
    return second, url


async def granted_and_held_once(
    decisions: Sequence[Any], cases: set[str], env: Env
) -> list[d.AdvanceGranted]:
    """Every case granted exactly once, each town's reserve one unbroken sequence of
    holds, and every case held exactly once on the postings topic (AMOUNT_FEN each)."""
    grants = await granted_once(decisions, cases, env)
    assert_reserves_in_sequence(grants)
    holds = held_once(await all_held(env, cases), cases)
    assert sum(p.amount_fen for p in holds.values()) == len(cases) * AMOUNT_FEN
    return grants


async def granted_once(
    decisions: Sequence[Any], cases: set[str], env: Env
) -> list[d.AdvanceGranted]:
    """Every case granted exactly once: no refusal, one event id per case (a redelivered
    decision carries the same id, so the ledger keeps it once), none missing, none extra."""
    refused = [r for r in decisions if isinstance(r, d.AdvanceRefused)]
    reasons = Counter((r.town, r.reason.value, r.reasons[:80]) for r in refused)
    assert not refused, (
        f"{len(refused)} refused (state applied twice, or lost?): "
        f"{[r.correlation_id for r in refused[:10]]}\nby town and reason: {dict(reasons)}\n"
        f"{logs(env)}"
    )
    ids: dict[str, set[uuid.UUID]] = defaultdict(set)
    first: dict[str, d.AdvanceGranted] = {}
    for r in decisions:
        if isinstance(r, d.AdvanceGranted):
            ids[r.correlation_id].add(r.event_id)
            first.setdefault(r.correlation_id, r)
    missing = sorted(cases - set(ids))
    assert not missing, (
        f"{len(missing)} cases never decided: {missing[:10]}\n"
        f"where they are in the intake log: {await located(env, set(missing))}\n"
        f"{logs(env)}"
    )
    assert set(ids) == cases, f"decisions for cases never requested: {sorted(set(ids) - cases)}"
    twice = {case: n for case, n in ids.items() if len(n) > 1}
    assert not twice, f"cases decided twice, with different ids: {list(twice)[:10]}"
    return list(first.values())


async def located(env: Env, ids: set[str]) -> dict[int, list[int]]:
    """The intake partition and offsets of the records that requested `ids`."""
    consumer = AIOKafkaConsumer(
        env.intake,
        bootstrap_servers=env.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: dict[int, list[int]] = defaultdict(list)
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1_000)
            if not batch:
                return dict(found)
            for msgs in batch.values():
                for m in msgs:
                    record = decode(m.value or b"")
                    if getattr(record, "correlation_id", None) in ids:
                        found[m.partition].append(m.offset)
    finally:
        await consumer.stop()


def held_once(postings: Sequence[Any], cases: set[str]) -> dict[str, Posting]:
    """Every case's hold posted exactly once: one posting id per case, none missing."""
    ids: dict[str, set[uuid.UUID]] = defaultdict(set)
    holds: dict[str, Posting] = {}
    for p in postings:
        if isinstance(p, Posting) and p.kind in HOLD_KINDS:
            ids[p.correlation_id].add(p.posting_id)
            holds.setdefault(p.correlation_id, p)
    assert set(ids) == cases, (
        f"holds missing for {sorted(cases - set(ids))[:10]}, "
        f"unasked for {sorted(set(ids) - cases)[:10]}"
    )
    twice = {case for case, n in ids.items() if len(n) > 1}
    assert not twice, f"cases held twice, with different posting ids: {sorted(twice)[:10]}"
    return holds


def assert_reserves_in_sequence(grants: Sequence[d.AdvanceGranted]) -> None:
    """With equal amounts, the k-th grant of a town quotes the reserve after k-1 holds:
    a batch applied twice repeats a figure or skips one, a batch lost repeats one."""
    county = load_county()
    quoted: dict[str, list[int]] = defaultdict(list)
    for g in grants:
        assert g.funded_by is d.FundedBy.TOWN_RESERVE, f"{g.correlation_id}: {g.funded_by}"
        assert g.amount_fen == AMOUNT_FEN
        quoted[g.town].append(int(g.figures["reserve_available_fen"]))
    for town, figures in quoted.items():
        size_fen = county.town(town).reserve_fen
        expected = [size_fen - k * AMOUNT_FEN for k in range(len(figures))]
        assert sorted(figures, reverse=True) == expected, f"town {town}: reserve figures"


def requests_over(towns: Sequence[str], n_cases: int, prefix: str) -> list[Record]:
    return [request(towns[n % len(towns)], f"{prefix}-{n}", n, AMOUNT_FEN) for n in range(n_cases)]


async def all_granted(
    env: Env, cases: set[str], timeout_s: float, workers: list[subprocess.Popen[bytes]] | None
) -> list[Any]:
    def done(got: list[Any]) -> bool:
        return len({r.correlation_id for r in got if isinstance(r, d.AdvanceGranted)}) >= len(cases)

    return await consume_until(env.bootstrap, env.decisions, done, timeout_s, workers)


async def all_held(env: Env, cases: set[str]) -> list[Any]:
    def done(got: list[Any]) -> bool:
        held = {p.correlation_id for p in got if isinstance(p, Posting) and p.kind in HOLD_KINDS}
        return len(held) >= len(cases)

    return await consume_until(env.bootstrap, env.postings, done, timeout_s=60)


async def granted_count_reaches(
    env: Env, n: int, workers: list[subprocess.Popen[bytes]] | None = None
) -> None:
    def done(got: list[Any]) -> bool:
        return sum(isinstance(r, d.AdvanceGranted) for r in got) >= n

    got = await consume_until(env.bootstrap, env.decisions, done, STARTED_S, workers)
    assert done(got), f"no {n} decisions within {STARTED_S:.0f} s\n{logs(env)}"


# --------------------------------------------------------------------------- stories


async def test_output_acks_stalled_past_the_send_timeout_then_resumed(
    env: Env, worker: list[subprocess.Popen[bytes]]
) -> None:
    """The broker stops answering for 12 s while a flood in three towns is being decided;
    the worker's sends time out after 5 s and it exits unacknowledged (69). Started
    again, it decides the rest, and nothing is lost or decided twice."""
    towns = [QIFENG, TIANZHUANG, SUOZHEN]
    n_cases, before_stall = 1_500, 1_200
    cases = requests_over(towns, n_cases, "stall")
    env.vars["RELIEF_EMERGENCY_OUTPUT_TIMEOUT_S"] = "5"
    worker.append(env.start_worker())
    # Our own clients hang while the broker is stopped: produce what comes before the
    # stall before it, and the rest after it.
    await feed(
        env.bootstrap,
        env.intake,
        [*map(flood, towns), *cases[:before_stall]],
        chunk=400,
        pause_s=0,
    )
    await granted_count_reaches(env, 150, workers=worker)

    supervisor = Supervisor(env, worker, restarts_max=4)
    supervising = asyncio.create_task(supervisor.run())
    try:
        async with broker_paused():
            await asyncio.sleep(12)
        await feed(env.bootstrap, env.intake, cases[before_stall:], chunk=100, pause_s=0.1)
        decisions = await all_granted(env, {c.correlation_id for c in cases}, AFTER_CRASH_S, None)
    finally:
        supervising.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervising

    # A stall that hit no send leaves the worker running; one that did ends it with 69,
    # never with anything else (70 would be a broken invariant).
    assert set(supervisor.exit_codes) <= {EXIT_UNAVAILABLE}, (
        f"worker exits {supervisor.exit_codes}\n{logs(env)}"
    )
    assert worker[-1].poll() is None, f"the last worker exited\n{logs(env)}"
    wanted = {c.correlation_id for c in cases}
    await granted_and_held_once(decisions, wanted, env)


async def test_a_second_worker_joins_and_leaves_mid_stream(
    env: Env, worker: list[subprocess.Popen[bytes]]
) -> None:
    """One worker decides a stream over every town; a second joins the group, takes
    partitions over with an empty data folder of its own, and is stopped (SIGTERM) while
    requests keep coming. Partitions move twice; every case is still decided once."""
    towns = load_county().codes()
    n_cases = 3_000
    cases = requests_over(towns, n_cases, "join")
    first = env.start_worker()
    worker.append(first)
    await feed(env.bootstrap, env.intake, [flood(t) for t in towns], chunk=100, pause_s=0)
    joined, left = asyncio.Event(), asyncio.Event()
    producing = asyncio.create_task(
        feed(
            env.bootstrap,
            env.intake,
            cases,
            chunk=50,
            pause_s=0.25,
            gates={1_000: joined, 2_000: left},
        )
    )
    try:
        await granted_count_reaches(env, 300, workers=[first])
        second, _ = await second_worker_joined(env, first, worker)
        joined.set()
        await asyncio.sleep(6)  # deciding its partitions while the stream goes on
        assert second.poll() is None, f"second worker exited\n{logs(env)}"
        second.send_signal(signal.SIGTERM)
        code = await exited(second, STOPPED_S)
        assert code == 0, f"the second worker did not stop cleanly: {code}\n{logs(env)}"
        left.set()
        await asyncio.wait_for(producing, STARTED_S)
    finally:
        producing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producing

    wanted = {c.correlation_id for c in cases}
    # no member died, so no session to wait out: the first worker decides the rest at once
    decisions = await all_granted(env, wanted, STARTED_S, [first])
    await granted_and_held_once(decisions, wanted, env)


async def test_a_killed_worker_replaced_by_one_with_an_empty_data_folder(
    env: Env, worker: list[subprocess.Popen[bytes]]
) -> None:
    """Qifeng's flood: a worker is killed (SIGKILL) mid-stream and a fresh one takes
    over with an empty data folder, so Qifeng's figures come from the changelog alone.
    The reserve must add up to every hold, each once."""
    n_cases = 2_000
    cases = requests_over([QIFENG], n_cases, "fresh")
    first = env.start_worker()
    worker.append(first)
    await feed(env.bootstrap, env.intake, [flood(QIFENG)], chunk=1, pause_s=0)
    killed = asyncio.Event()
    producing = asyncio.create_task(
        feed(env.bootstrap, env.intake, cases, chunk=100, pause_s=0.1, gates={1_000: killed})
    )
    fresh_dir = env.log.parent / "data-fresh"
    try:
        await granted_count_reaches(env, 400, workers=[first])
        first.send_signal(signal.SIGKILL)
        assert await exited(first, 10) == -signal.SIGKILL
        killed.set()
        assert not fresh_dir.exists()
        replacement = start_worker_with(
            env, "worker-fresh.log", RELIEF_EMERGENCY_DATA_DIR=str(fresh_dir)
        )
        worker.append(replacement)
        await asyncio.wait_for(producing, STARTED_S)
    finally:
        producing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producing

    wanted = {c.correlation_id for c in cases}
    decisions = await all_granted(env, wanted, AFTER_CRASH_S, [replacement])
    grants = await granted_once(decisions, wanted, env)
    assert_reserves_in_sequence(grants)  # the reserve rebuilt from the changelog, exactly
    holds = held_once(await all_held(env, wanted), wanted)
    assert sum(p.amount_fen for p in holds.values()) == n_cases * AMOUNT_FEN
    reserve, reserve_held = (
        account(AccountKind.TOWN_RESERVE, QIFENG),
        account(AccountKind.TOWN_RESERVE_HELD, QIFENG),
    )
    for p in holds.values():  # each moved from Qifeng's reserve to its held part
        assert p.kind == PostingKind.ADVANCE_GRANTED.value
        sides = {(line.account, line.side) for line in p.lines}
        assert sides == {(reserve_held, Side.DEBIT), (reserve, Side.CREDIT)}
    assert any(fresh_dir.iterdir()), "the replacement kept its state elsewhere"
