"""Benchmark of the emergency processor (run on purpose, never as a test).

    python benchmarks/emergency_bench.py core --requests 20000
    python benchmarks/emergency_bench.py worker --requests 5000      # needs ./run up's Kafka

`core`: the pure rules alone (`decide.handle`), requests spread over the county's towns.
`worker`: a real Faust worker process on fresh topics: N urgent requests produced at once,
then decisions/s and the latency from each request's broker stamp (LogAppendTime) to the
broker's acknowledgement of its decision, as percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.local.topics import ensure_topics  # noqa: E402
from schemas import intake as i  # noqa: E402
from schemas.envelope import Actor, Role  # noqa: E402
from schemas.policy import load_config  # noqa: E402
from schemas.registry import decode, encode  # noqa: E402
from services.emergency.domain.decide import Rules, handle  # noqa: E402
from services.emergency.domain.state import TownState  # noqa: E402

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


def bench_core(n: int) -> None:
    config = load_config()
    rules = Rules(policy=config.policy, county=config.county)
    towns = config.county.codes()
    states: dict[str, TownState | None] = dict.fromkeys(towns)
    t0 = datetime(2026, 7, 20, tzinfo=UTC)
    records = [request(towns[k % len(towns)], k, t0 + timedelta(seconds=k)) for k in range(n)]
    lat: list[float] = []
    start = time.perf_counter()
    for k, rec in enumerate(records):
        s = time.perf_counter()
        states[rec.town], _ = handle(states[rec.town], rec, rules, offset=k)
        lat.append((time.perf_counter() - s) * 1000)
    elapsed = time.perf_counter() - start
    print(f"core: {n} requests over {len(towns)} towns in {elapsed:.2f} s")
    print(f"  decisions/s      {n / elapsed:,.0f}")
    print(f"  latency_ms p50   {pct(lat, 50):.3f}   p99 {pct(lat, 99):.3f}   max {max(lat):.3f}")


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.emergency", "worker", "--loglevel", "warn"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def bench_worker(n: int, bootstrap: str) -> None:
    tag = uuid.uuid4().hex[:8]
    names = {f"bench.{t}.{tag}": {} for t in ("decisions", "postings", "rejected")}
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
    }
    worker = start_worker(env, Path(tmp) / "worker.log")
    try:
        towns = load_config().county.codes()
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            # one warm-up record so the worker's start-up is not measured
            warm = request(towns[0], 10**9, datetime.now(UTC))
            await (await producer.send(intake, key=warm.town.encode(), value=encode(warm)))
            consumer = AIOKafkaConsumer(
                f"bench.decisions.{tag}", bootstrap_servers=bootstrap, auto_offset_reset="earliest"
            )
            await consumer.start()
            while not await consumer.getmany(timeout_ms=1000):
                pass
            start = time.perf_counter()
            futures = []
            for k in range(n):
                rec = request(towns[k % len(towns)], k, datetime.now(UTC))
                futures.append(
                    await producer.send(intake, key=rec.town.encode(), value=encode(rec))
                )
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
            if batch:
                last_progress = time.monotonic()
            for msgs in batch.values():
                for m in msgs:
                    rec = decode(m.value or b"")
                    if rec.correlation_id.startswith("bench-") and rec.correlation_id not in seen:
                        seen.add(rec.correlation_id)
                        lat.append(m.timestamp - rec.occurred_at.timestamp() * 1000)
        elapsed = time.perf_counter() - start
        await consumer.stop()
        print(
            f"worker: {len(seen)}/{n} requests decided in {elapsed:.2f} s "
            f"(produced in {produced:.2f} s)"
        )
        print(f"  decisions/s      {len(seen) / elapsed:,.0f}")
        if lat:
            print(
                f"  latency_ms p50   {pct(lat, 50):.0f}   p90 {pct(lat, 90):.0f}   "
                f"p99 {pct(lat, 99):.0f}   max {max(lat):.0f}  (request stamp -> decision acked)"
            )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["core", "worker"])
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument(
        "--bootstrap", default=os.environ.get("RELIEF_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    )
    args = parser.parse_args()
    if args.mode == "core":
        bench_core(args.requests)
    else:
        asyncio.run(bench_worker(args.requests, args.bootstrap))


if __name__ == "__main__":
    main()
