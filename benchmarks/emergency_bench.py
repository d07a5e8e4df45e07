"""Benchmark of the emergency processor (run on purpose, never as a test).

    python benchmarks/emergency_bench.py core --requests 1000000
    python benchmarks/emergency_bench.py core --requests 100000 --one-town
    python benchmarks/emergency_bench.py worker --requests 5000      # needs ./run up's Kafka

`core`: the pure rules alone (`decide` in batches of books), over the county's towns or one.
`worker`: a real Faust worker process on fresh topics: N urgent requests produced at once,
then decisions/s and the latency from each request's broker stamp (LogAppendTime) until
its decision is read back from the decisions topic, as percentiles. `--workers N` runs N
worker processes in one group (each with a standby of another's state).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydantic_core
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from relief_platform import kafka_security

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from relief_platform.topics import ensure_topics  # noqa: E402
from schemas import intake as i  # noqa: E402
from schemas.envelope import Actor, Role  # noqa: E402
from schemas.policy import load_config  # noqa: E402
from schemas.registry import encode  # noqa: E402
from services.emergency.domain.book import Book  # noqa: E402
from services.emergency.domain.decide import Rules, decide  # noqa: E402

TOWN = Actor(role=Role.TOWN, org="镇人民政府")


def request(town: str, n: int, at: datetime) -> i.ReliefRequested:
    return i.ReliefRequested(
        event_id=uuid.uuid4(),
        occurred_at=at,
        recorded_at=at,
        town=town,
        actor=TOWN,
        correlation_id=f"bench-{n}",
        urgency=i.Urgency.URGENT,
        category=i.ReliefCategory.EMERGENCY,
        household_ref=f"h_{n:032x}",
        requested_fen=1_000 + n % 50_000,
        reason="benchmark",
    )


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) > 1 else values[0]


def bench_core(n: int, one_town: bool, batch: int = 500) -> None:
    """The rules as the worker runs them: batches of records decided in a book per town,
    then every change encoded and stored (a dict stands for the table). Prints the rate
    of each tenth of the run: a flat cost means state does not grow with history."""
    config = load_config()
    rules = Rules(policy=config.policy, county=config.county)
    towns = config.county.codes()[:1] if one_town else config.county.codes()
    table: dict[str, object] = {}
    t0 = datetime(2026, 7, 20, tzinfo=UTC)
    step = timedelta(days=1) / max(n, 1)  # all of them within one day: the 24 h all open
    slice_n = max(n // 10, 1)
    rates: list[float] = []
    start = slice_start = time.perf_counter()
    k = 0
    while k < n:
        books: dict[str, Book] = {}
        for rec in (
            request(towns[m % len(towns)], m, t0 + step * m) for m in range(k, min(k + batch, n))
        ):
            book = books.setdefault(rec.town, Book(rec.town, table.get))
            decide(book, rec, rules)
        for book in books.values():
            for key, value in book.changes():
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
        k = min(k + batch, n)
        while len(rates) < k // slice_n:
            now = time.perf_counter()
            rates.append(slice_n / (now - slice_start))
            slice_start = now
    elapsed = time.perf_counter() - start
    where = f"one town ({towns[0]})" if one_town else f"{len(towns)} towns"
    print(f"core: {n:,} urgent requests over {where} in {elapsed:.1f} s, batches of {batch}")
    print(f"  decisions/s overall   {n / elapsed:,.0f}")
    print("  decisions/s by tenth  " + "  ".join(f"{r:,.0f}" for r in rates[:10]))
    if len(rates) >= 10:
        print(f"  last tenth / first    {rates[9] / rates[0]:.2f}")
    largest = max(len(json.dumps(v, ensure_ascii=False).encode()) for v in table.values())
    print(f"  stored values {len(table):,}, the largest {largest:,} bytes")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux), or None where /proc is absent.
    CPU per decision is the worker's cost, whatever else the machine is doing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.emergency", "worker", "--loglevel", "warn"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def members_when_stable(bootstrap: str, group: str) -> int:
    """How many members the consumer group has once it is stable; 0 while it rebalances."""
    admin = AIOKafkaAdminClient(**kafka_security.client_options(), bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for response in described:
        for _error, _name, state, _ptype, _protocol, members in response.groups:
            return len(members) if state == "Stable" else 0
    return 0


async def group_of(bootstrap: str, group: str, workers: int, timeout_s: float = 120) -> None:
    """Wait until `workers` members share the group's partitions, stable."""
    for _ in range(int(timeout_s)):
        if await members_when_stable(bootstrap, group) >= workers:
            return
        await asyncio.sleep(1)
    raise SystemExit(f"the group {group} never had {workers} stable members")


async def bench_worker(n: int, bootstrap: str, workers: int = 1) -> None:
    tag = uuid.uuid4().hex[:8]
    names: dict[str, dict[str, str]] = {
        f"bench.{t}.{tag}": {} for t in ("decisions", "postings", "rejected")
    }
    intake = f"bench.intake.{tag}"
    names[intake] = {"message.timestamp.type": "LogAppendTime"}
    await ensure_topics(bootstrap, partitions=6, names=names)
    tmp = tempfile.mkdtemp(prefix="relief-bench-")
    env = {
        **os.environ,
        "RELIEF_KAFKA_BOOTSTRAP": bootstrap,
        "RELIEF_EMERGENCY_APP_ID": f"bench-{tag}",
        "RELIEF_EMERGENCY_DATA_DIR": tmp,
        "RELIEF_INTAKE_TOPIC": intake,
        "RELIEF_DECISIONS_TOPIC": f"bench.decisions.{tag}",
        "RELIEF_POSTINGS_TOPIC": f"bench.postings.{tag}",
        "RELIEF_REJECTED_TOPIC": f"bench.rejected.{tag}",
        "RELIEF_PARTITIONS": "6",
        "RELIEF_EMERGENCY_METRICS_PORT": "0",
    }
    worker = start_worker(env, Path(tmp) / "worker.log")
    others = [
        start_worker(
            {
                **env,
                "RELIEF_EMERGENCY_DATA_DIR": f"{tmp}/w{k}",
                "RELIEF_EMERGENCY_WEB_PORT": str(6066 + k),
            },
            Path(tmp) / f"worker-{k}.log",
        )
        for k in range(1, workers)
    ]
    try:
        towns = load_config().county.codes()
        producer = AIOKafkaProducer(
            **kafka_security.client_options(),
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
        )
        await producer.start()
        try:
            # one warm-up record so the worker's start-up is not measured
            warm = request(towns[0], 10**9, datetime.now(UTC))
            await (await producer.send(intake, key=warm.town.encode(), value=encode(warm)))
            consumer = AIOKafkaConsumer(
                f"bench.decisions.{tag}",
                **kafka_security.client_options(),
                bootstrap_servers=bootstrap,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            while not await consumer.getmany(timeout_ms=1000):
                pass
            # every worker in the group before the clock starts (no rebalance measured)
            await group_of(bootstrap, env["RELIEF_EMERGENCY_APP_ID"], workers)
            # the requests are built before the clock starts: the clients that send them
            # are not the processor, and on two cores their CPU would be counted against it
            made = datetime.now(UTC)
            ready = [
                (rec.town.encode(), encode(rec))
                for rec in (request(towns[k % len(towns)], k, made) for k in range(n))
            ]
            start = time.perf_counter()
            cpu_start = cpu_total([worker, *others])
            futures = []
            for key, value in ready:
                futures.append(await producer.send(intake, key=key, value=value))
            await asyncio.gather(*futures)
            produced = time.perf_counter() - start
        finally:
            await producer.stop()
        lat: list[float] = []
        seen: set[str] = set()
        deadline = time.monotonic() + 600
        last_progress = time.monotonic()
        while len(seen) < n and time.monotonic() < deadline:
            if time.monotonic() - last_progress > 30:
                print(f"  stalled at {len(seen)} decided requests", file=sys.stderr)
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            # a decision is stamped with its request's broker time (the processor's one
            # clock), so its latency is read here, when it arrives, against that stamp
            arrived_ms = time.time() * 1000
            if batch:
                last_progress = time.monotonic()
            for msgs in batch.values():
                for m in msgs:
                    # two fields read, not the whole record validated (the bench's own CPU)
                    decided = pydantic_core.from_json(m.value or b"")
                    case = decided["correlation_id"]
                    if case.startswith("bench-") and case not in seen:
                        seen.add(case)
                        occurred = datetime.fromisoformat(decided["occurred_at"])
                        lat.append(arrived_ms - occurred.timestamp() * 1000)
        elapsed = time.perf_counter() - start
        cpu_end = cpu_total([worker, *others])
        await consumer.stop()
        print(
            f"{workers} worker(s): {len(seen)}/{n} requests decided in {elapsed:.2f} s "
            f"(produced in {produced:.2f} s)"
        )
        print(f"  decisions/s      {len(seen) / elapsed:,.0f}")
        if cpu_start is not None and cpu_end is not None and seen:
            per = (cpu_end - cpu_start) / len(seen) * 1000
            print(
                f"  worker CPU       {per:.3f} ms per decision "
                f"(at most {1000 / per:,.0f} decisions/s on one free core)"
            )
        if lat:
            print(
                f"  latency_ms p50   {pct(lat, 50):.0f}   p90 {pct(lat, 90):.0f}   "
                f"p99 {pct(lat, 99):.0f}   max {max(lat):.0f}"
                "  (request's broker stamp -> decision read)"
            )
    finally:
        for proc in [worker, *others]:
            proc.send_signal(signal.SIGTERM)
        for proc in [worker, *others]:
            proc.wait(30)


def cpu_total(procs: list[subprocess.Popen[bytes]]) -> float | None:
    seconds = [cpu_seconds(p.pid) for p in procs]
    return None if None in seconds else sum(s for s in seconds if s is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["core", "worker"])
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--one-town", action="store_true", help="core: every case in one town")
    parser.add_argument("--workers", type=int, default=1, help="worker: processes in the group")
    parser.add_argument(
        "--bootstrap", default=os.environ.get("RELIEF_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    )
    args = parser.parse_args()
    if args.mode == "core":
        bench_core(args.requests, args.one_town)
    else:
        asyncio.run(bench_worker(args.requests, args.bootstrap, args.workers))


if __name__ == "__main__":
    main()
