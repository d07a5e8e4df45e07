"""The processor as it runs: a Faust worker process against the real Kafka broker.

A flood in two towns goes through the running worker; then a worker is killed with
SIGKILL in the middle of a stream of requests, restarted, and must recover its tables
and produce no second decision for any case (compared by deterministic ids).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from schemas import decisions as d
from schemas import intake as i
from schemas.envelope import Actor, Record, Role
from schemas.postings import Posting
from schemas.registry import decode, encode
from schemas.topics import RejectedRecord

pytestmark = pytest.mark.integration

PARTITIONS = 3
QIFENG, TIANZHUANG, SUOZHEN = "370321101", "370321102", "370321001"
ROOT = Path(__file__).resolve().parents[3]
TOWN = Actor(role=Role.TOWN, org="镇人民政府")
BUREAU = Actor(role=Role.EMERGENCY_BUREAU, org="桓台县应急管理局")


class Env:
    def __init__(self, bootstrap: str, unique: str, tmp: Path) -> None:
        self.bootstrap = bootstrap
        self.unique = unique
        self.intake = f"test.intake.{unique}"
        self.decisions = f"test.decisions.{unique}"
        self.postings = f"test.postings.{unique}"
        self.rejected = f"test.rejected.{unique}"
        self.vars = {
            **os.environ,
            "RELIEF_KAFKA_BOOTSTRAP": bootstrap,
            "RELIEF_EMERGENCY_APP_ID": f"test-emergency-{unique}",
            "RELIEF_EMERGENCY_DATA_DIR": str(tmp / "data"),
            "RELIEF_INTAKE_TOPIC": self.intake,
            "RELIEF_DECISIONS_TOPIC": self.decisions,
            "RELIEF_POSTINGS_TOPIC": self.postings,
            "RELIEF_REJECTED_TOPIC": self.rejected,
            "RELIEF_PARTITIONS": str(PARTITIONS),
        }
        self.log = tmp / "worker.log"

    def start_worker(self) -> subprocess.Popen[bytes]:
        out = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen(
            [sys.executable, "-m", "services.emergency", "worker", "--loglevel", "warn"],
            cwd=ROOT,
            env=self.vars,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
async def env(stack: local_stack.StackInfo, unique: str, tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(stack.kafka_bootstrap, unique, tmp_path)
    await ensure_topics(
        stack.kafka_bootstrap,
        partitions=PARTITIONS,
        names={
            e.intake: {"message.timestamp.type": "LogAppendTime"},
            e.decisions: {},
            e.postings: {},
            e.rejected: {},
        },
    )
    yield e


@pytest.fixture
def worker(env: Env) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    stop_processes(procs, wait_s=20)


def stop_processes(procs: list[subprocess.Popen[bytes]], wait_s: float) -> None:
    """SIGTERM each process still running; SIGKILL the ones not gone within `wait_s`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(wait_s)
            except subprocess.TimeoutExpired:
                p.kill()


def _env(town: str, corr: str, actor: Actor) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4(),
        "occurred_at": datetime.now(UTC),
        "town": town,
        "actor": actor,
        "correlation_id": corr,
    }


def flood(town: str) -> i.IncidentReported:
    return i.IncidentReported(
        **_env(town, "flood-0720", BUREAU),
        incident_id="flood-0720",
        kind=i.IncidentKind.NATURAL_DISASTER,
        disaster_subtype=i.DisasterSubtype.FLOOD,
    )


def request(town: str, case: str, household: int, amount_fen: int = 80_000) -> i.ReliefRequested:
    return i.ReliefRequested(
        **_env(town, case, TOWN),
        urgency=i.Urgency.URGENT,
        category=i.ReliefCategory.EMERGENCY,
        household_ref=f"h_{household:032x}",
        incident_id="flood-0720",
        requested_fen=amount_fen,
        reason="房屋进水",
    )


async def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    raw: Sequence[tuple[str, bytes]] = (),
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=r.town.encode(), value=encode(r)) for r in records
        ]
        for key, value in raw:
            futures.append(await producer.send(topic, key=key.encode(), value=value))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume_until(
    bootstrap: str,
    topic: str,
    done: Any,
    timeout_s: float = 90.0,
    workers: list[subprocess.Popen[bytes]] | None = None,
) -> list[Any]:
    """Every record of `topic` from the start, until `done(records)` or the timeout;
    fails at once when a worker that should be running has exited."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    if topic.startswith("test.rejected"):
                        got.append(RejectedRecord.model_validate_json(m.value or b""))
                    else:
                        got.append(decode(m.value or b""))
            if done(got):
                return got
            for w in workers or []:
                if w.poll() is not None and w.returncode != -signal.SIGKILL:
                    raise AssertionError(f"worker exited with {w.returncode}")
        return got
    finally:
        await consumer.stop()


async def test_a_flood_in_two_towns_through_the_running_worker(
    env: Env, worker: list[subprocess.Popen[bytes]]
) -> None:
    worker.append(env.start_worker())
    records: list[Record] = [flood(QIFENG), flood(TIANZHUANG)]
    records += [request(QIFENG, f"q-{n}", n) for n in range(3)]
    records += [request(TIANZHUANG, f"t-{n}", 100 + n) for n in range(2)]
    records.append(request(QIFENG, "q-dup", 0))  # P6: same household, same flood
    await produce(env.bootstrap, env.intake, records, raw=[(QIFENG, b"{not json")])

    def complete(got: list[Any]) -> bool:
        return len([r for r in got if isinstance(r, d.AdvanceGranted | d.AdvanceRefused)]) >= 6

    decisions = await consume_until(env.bootstrap, env.decisions, complete, workers=worker)
    granted = {r.correlation_id: r for r in decisions if isinstance(r, d.AdvanceGranted)}
    refused = [r for r in decisions if isinstance(r, d.AdvanceRefused)]
    assert sorted(granted) == ["q-0", "q-1", "q-2", "t-0", "t-1"], env.log.read_text()[-3000:]
    assert [r.reason for r in refused] == [d.RefusalReason.DUPLICATE]
    for g in granted.values():
        assert g.recorded_at is None  # decisions are stamped on their own topic, not here
        assert g.due_at > g.occurred_at  # 24 h from the request's broker stamp (R5)

    postings = await consume_until(
        env.bootstrap, env.postings, lambda got: len(got) >= 7
    )  # 2 openings + 5 holds
    kinds = sorted(p.kind for p in postings if isinstance(p, Posting))
    assert kinds == ["advance_granted"] * 5 + ["reserve_funded"] * 2

    dead = await consume_until(env.bootstrap, env.rejected, lambda got: len(got) >= 1)
    assert "not JSON" in dead[0].reason


async def test_a_worker_killed_mid_stream_recovers_and_decides_nothing_twice(
    env: Env, worker: list[subprocess.Popen[bytes]]
) -> None:
    towns = [QIFENG, TIANZHUANG, SUOZHEN]
    n_cases = 600
    await produce(env.bootstrap, env.intake, [flood(t) for t in towns])
    first = env.start_worker()
    worker.append(first)
    # Wait until the worker is deciding, then feed the stream and kill it mid-way.
    await produce(env.bootstrap, env.intake, [request(QIFENG, "warm-up", 9_999, 1_000)])
    await consume_until(env.bootstrap, env.decisions, lambda got: len(got) >= 1, timeout_s=120)
    cases = [request(towns[n % 3], f"case-{n}", n, 1_000 + n) for n in range(n_cases)]
    producing = asyncio.create_task(produce(env.bootstrap, env.intake, cases))
    await consume_until(env.bootstrap, env.decisions, lambda got: len(got) >= 150, timeout_s=120)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    await producing
    worker.append(env.start_worker())

    def all_decided(got: list[Any]) -> bool:
        return (
            len({r.correlation_id for r in got if isinstance(r, d.AdvanceGranted)}) >= n_cases + 1
        )

    decisions = await consume_until(env.bootstrap, env.decisions, all_decided, timeout_s=180)
    ids_per_case: dict[str, set[uuid.UUID]] = defaultdict(set)
    for r in decisions:
        ids_per_case[r.correlation_id].add(r.event_id)
        assert not isinstance(r, d.AdvanceRefused), (
            f"{r.correlation_id} refused: state applied twice?"
        )
    assert len(ids_per_case) == n_cases + 1
    assert all(len(ids) == 1 for ids in ids_per_case.values()), "a case got a second decision"

    # The reserve in the postings: every hold once (by id), whatever was redelivered.
    postings = await consume_until(
        env.bootstrap, env.postings, lambda got: len({p.posting_id for p in got}) >= n_cases + 4
    )
    holds = {p.posting_id: p for p in postings if p.kind == "advance_granted"}
    assert len(holds) == n_cases + 1
    assert sum(p.amount_fen for p in holds.values()) == 1_000 + sum(
        1_000 + n for n in range(n_cases)
    )


async def test_a_burst_over_every_town_is_decided_completely(
    env: Env, worker: list[subprocess.Popen[bytes]]
) -> None:
    """Batches span partitions and arrive while the previous batch is being sent: every
    request still gets its decision (none dropped between batches)."""
    from schemas.towns import load_county

    towns = load_county().codes()
    n_cases = 2_000
    worker.append(env.start_worker())
    cases = [request(towns[n % len(towns)], f"b-{n}", n, 1_000) for n in range(n_cases)]
    await produce(env.bootstrap, env.intake, [*map(flood, towns), *cases[:500]])
    await consume_until(env.bootstrap, env.decisions, lambda got: len(got) >= 1, workers=worker)
    await produce(env.bootstrap, env.intake, cases[500:])

    def all_decided(got: list[Any]) -> bool:
        return len({r.correlation_id for r in got if isinstance(r, d.AdvanceGranted)}) >= n_cases

    decisions = await consume_until(
        env.bootstrap, env.decisions, all_decided, timeout_s=180, workers=worker
    )
    granted = {r.correlation_id for r in decisions if isinstance(r, d.AdvanceGranted)}
    assert granted == {f"b-{n}" for n in range(n_cases)}


async def test_five_thousand_cases_in_one_town_survive_a_sigkill(
    env: Env, worker: list[subprocess.Popen[bytes]]
) -> None:
    """A flood's worth of urgent cases in one town (one town's state once passed Kafka's
    1 MB record limit at ~900 cases and stopped the worker for good): SIGKILL mid-stream,
    restart, and every case has exactly one decision; the reserve never went below zero."""
    n_cases, amount = 5_000, 10_000  # 100 yuan each: the 50,000-yuan reserve holds 500
    await produce(env.bootstrap, env.intake, [flood(QIFENG)])
    first = env.start_worker()
    worker.append(first)
    cases = [request(QIFENG, f"big-{n}", n, amount) for n in range(n_cases)]
    producing = asyncio.create_task(produce(env.bootstrap, env.intake, cases))
    await consume_until(env.bootstrap, env.decisions, lambda got: len(got) >= 1_500, 180, worker)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    await producing
    restarted_at = asyncio.get_running_loop().time()
    worker.append(env.start_worker())
    seen_before = len(await consume_until(env.bootstrap, env.decisions, lambda got: False, 3))

    back_after: list[float] = []

    def all_decided(got: list[Any]) -> bool:
        if not back_after and len(got) > seen_before:
            back_after.append(asyncio.get_running_loop().time() - restarted_at)
        granted = {r.correlation_id for r in got if isinstance(r, d.AdvanceGranted)}
        return len(granted) >= n_cases

    decisions = await consume_until(env.bootstrap, env.decisions, all_decided, 300, worker)
    print(f"\nthe restarted worker decided again after {back_after[0]:.1f} s")
    assert back_after and back_after[0] < 60  # liveness, not speed: the group moved on
    grants: dict[str, set[uuid.UUID]] = defaultdict(set)
    for r in decisions:
        assert not isinstance(r, d.AdvanceRefused), f"{r.correlation_id}: applied twice?"
        if isinstance(r, d.AdvanceGranted):
            grants[r.correlation_id].add(r.event_id)
    assert len(grants) == n_cases and all(len(ids) == 1 for ids in grants.values())
    on_reserve = [
        r
        for r in decisions
        if isinstance(r, d.AdvanceGranted) and r.funded_by is d.FundedBy.TOWN_RESERVE
    ]
    assert len({r.correlation_id for r in on_reserve}) == 5_000_000 // amount  # R4: exactly full
    lows = [r.available_fen for r in decisions if isinstance(r, d.ReserveLow)]
    assert len(lows) == 1 and 0 <= lows[0] < 1_000_000  # alerted once, never below zero


async def test_a_worker_refuses_a_wrong_world_with_one_line_per_problem(env: Env) -> None:
    """Fail fast: a partition count that is not the intake topic's would decide towns on
    the wrong partition. The worker says so and exits 78; no restart can help."""
    wrong = {**env.vars, "RELIEF_PARTITIONS": str(PARTITIONS + 1)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.emergency",
        "worker",
        cwd=ROOT,
        env=wrong,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    stderr = err.decode()
    assert proc.returncode == 78, stderr[-2000:]
    lines = [ln for ln in stderr.splitlines() if ln.startswith("preflight:")]
    assert len(lines) == 1 and f"has {PARTITIONS} partitions" in lines[0], stderr[-2000:]
