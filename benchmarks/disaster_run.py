"""A flood in one town at the size a disaster brings, through the whole running stack.

    ./run up
    .venv/bin/python benchmarks/disaster_run.py --cases 4000

Registers N urgent cases in one town (Qifeng by default) through the intake API, as the
town's clerks would (several at once), then waits until every accepted case has its
decision on the decisions topic, and prints: requests/s accepted, the time until the
last decision, the latency from each 202 to its decision read from Kafka, every
service's state (`./run status`), and whether any 202 went undecided. Run on purpose,
never as a test; it writes real records into the local stack's topics.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import tomllib
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from relief_platform import kafka_security

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.local import stack  # noqa: E402
from schemas import topics  # noqa: E402
from schemas.identity import check_char  # noqa: E402
from schemas.registry import decode  # noqa: E402

DECIDED = ("AdvanceGranted", "AdvanceRefused", "ApprovalRequired", "DeliberationRequired")


def resident_id(n: int) -> str:
    """A distinct well-formed (GB 11643) resident ID number of Huantai per n."""
    born = date(1950, 1, 1) + timedelta(days=n // 1000)
    first17 = f"370321{born:%Y%m%d}{n % 1000:03d}"
    return first17 + check_char(first17)


async def register(
    api: str, token: str, town: str, run: str, n_cases: int, clients: int
) -> dict[str, float]:
    """Every case once, `clients` at a time; returns case id -> when it was accepted."""
    accepted: dict[str, float] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(n_cases):
        queue.put_nowait(n)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            case_id = f"{run}-{n}"
            body: dict[str, Any] = {
                "town": town,
                "case_id": case_id,
                "urgency": "urgent",
                "category": "emergency",
                "household_head_id": resident_id(n),
                "requested_fen": 50_000,
                "reason": "洪水进屋，急需生活救助",
            }
            for attempt in range(5):
                answer = await http.post(
                    "/v1/cases",
                    json=body,
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": case_id},
                )
                if answer.status_code == 202:
                    accepted[case_id] = time.monotonic()
                    break
                if answer.status_code != 503:
                    raise RuntimeError(f"{case_id}: {answer.status_code} {answer.text[:300]}")
                await asyncio.sleep(0.5 * 2**attempt)  # the outcome is unknown: same key again

    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return accepted


async def decided(
    bootstrap: str,
    run: str,
    start_registering: Callable[[], asyncio.Task[dict[str, float]]],
    timeout_s: float,
) -> dict[str, float]:
    """Case id -> when its first decision was read from Kafka (monotonic), for the run's
    cases, read while they are registered (a decision's own stamp is its request batch's
    broker time, so it cannot say when the decision was made)."""
    consumer = AIOKafkaConsumer(
        topics.DECISIONS,
        **kafka_security.client_options(),
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,  # every partition of the topic, no group
    )
    await consumer.start()
    parts = await assigned(consumer)
    await consumer.seek_to_end(*parts)
    for tp in parts:  # positioned before the first request is sent: no decision missed
        await consumer.position(tp)
    registering = start_registering()
    out: dict[str, float] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if registering.done() and out.keys() >= registering.result().keys():
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            now = time.monotonic()
            for msgs in batch.values():
                for m in msgs:
                    rec = decode(m.value or b"")
                    if rec.type in DECIDED and rec.correlation_id.startswith(f"{run}-"):
                        out.setdefault(rec.correlation_id, now)
    finally:
        await consumer.stop()
    return out


async def assigned(consumer: AIOKafkaConsumer) -> list[TopicPartition]:
    """The partitions the consumer was given (once it has read the topic's metadata)."""
    deadline = time.monotonic() + 30
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{topics.DECISIONS}: no partitions within 30 s")
        await asyncio.sleep(0.1)
    return sorted(consumer.assignment())


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else values[0]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=4_000)
    parser.add_argument("--town", default="370321101")
    parser.add_argument("--who", default="qifeng", help="the demo token to act as")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--api", default="http://127.0.0.1:8080")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    tokens = tomllib.loads((stack.state_dir() / "demo-tokens.toml").read_text())
    run = f"flood{uuid.uuid4().hex[:6]}"
    registering: list[asyncio.Task[dict[str, float]]] = []
    began: list[float] = []

    def start_registering() -> asyncio.Task[dict[str, float]]:
        began.append(time.monotonic())
        registering.append(
            asyncio.create_task(
                register(args.api, tokens[args.who], args.town, run, args.cases, args.clients)
            )
        )
        return registering[0]

    seen = await decided(stack.local_info().kafka_bootstrap, run, start_registering, args.timeout)
    accepted = await registering[0]
    start = began[0]
    took = max(accepted.values(), default=start) - start
    rate = len(accepted) / max(took, 1e-9)
    print(f"accepted {len(accepted):,}/{args.cases:,} cases in {took:.1f} s "
          f"({rate:,.0f} requests/s, {args.clients} clients)")  # fmt: skip
    until = max(seen.values(), default=start) - start
    missing = sorted(set(accepted) - set(seen))
    print(f"decided  {len(seen):,}/{len(accepted):,} within {until:.1f} s of the first request")
    lat = [(seen[c] - accepted[c]) * 1000 for c in accepted if c in seen]
    if lat:
        print(f"  202 -> decision read from Kafka: p50 {pct(lat, 50):,.0f} ms, "
              f"p99 {pct(lat, 99):,.0f} ms, max {max(lat):,.0f} ms")  # fmt: skip
    status = await asyncio.create_subprocess_exec(
        str(ROOT / "run"), "status", stdout=asyncio.subprocess.PIPE
    )
    shown, _ = await status.communicate()
    print(shown.decode().rstrip())
    if missing:
        print(f"UNDECIDED 202s: {len(missing)} (first: {missing[:5]})")
        return 1
    print("every accepted case was decided; status " + ("ok" if status.returncode == 0 else
                                                          "NOT ok"))  # fmt: skip
    return 0 if status.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
