"""Intake API throughput and latency, against a running intake (not a test).

    RELIEF_API_URL=http://127.0.0.1:8080 RELIEF_TOKEN=<a town token> RELIEF_TOWN=370321001 \
        .venv/bin/python benchmarks/intake_bench.py --requests 2000 --concurrency 32

Each request registers an urgent case with its own Idempotency-Key, so every 202 is a
record Kafka acknowledged (acks=all). Prints accepted requests/s and latency percentiles.
Point the intake at a scratch topic (RELIEF_INTAKE_TOPIC) unless you want the cases decided.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections import Counter
from datetime import date

import aiohttp

from schemas.identity import check_char


def resident_id(n: int) -> str:
    born = date(1950 + n % 50, 1 + n % 12, 1 + n % 28)
    first17 = f"370321{born:%Y%m%d}{n % 1000:03d}"
    return first17 + check_char(first17)


def percentile(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return float("nan")
    index = min(len(sorted_ms) - 1, round(p / 100 * (len(sorted_ms) - 1)))
    return sorted_ms[index]


async def run(api: str, token: str, town: str, total: int, concurrency: int) -> None:
    latencies_ms: list[float] = []
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    run_id = uuid.uuid4().hex[:8]
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)

    async with aiohttp.ClientSession(api, connector=connector, timeout=timeout) as client:

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                body = {
                    "town": town,
                    "case_id": f"bench-{run_id}-{i}",
                    "urgency": "urgent",
                    "category": "emergency",
                    "household_head_id": resident_id(i),
                    "requested_fen": 50_000,
                    "reason": "benchmark",
                }
                headers = {
                    "Authorization": f"Bearer {token}",
                    "Idempotency-Key": f"bench-{run_id}-{i}",
                }
                started = time.perf_counter()
                try:
                    async with client.post("/v1/cases", json=body, headers=headers) as answer:
                        await answer.read()
                        statuses[answer.status] += 1
                except (aiohttp.ClientError, TimeoutError):
                    statuses[0] += 1
                    continue
                if answer.status == 202:
                    latencies_ms.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed_s = time.perf_counter() - started

    latencies_ms.sort()
    accepted = statuses.get(202, 0)
    print(f"requests {total}, concurrency {concurrency}, {elapsed_s:.2f} s")
    print(f"statuses {dict(sorted(statuses.items()))}")
    print(f"accepted {accepted / elapsed_s:,.0f} requests/s")
    if latencies_ms:
        print(
            f"latency_ms p50 {percentile(latencies_ms, 50):.1f}  "
            f"p95 {percentile(latencies_ms, 95):.1f}  p99 {percentile(latencies_ms, 99):.1f}  "
            f"max {latencies_ms[-1]:.1f}  mean {statistics.fmean(latencies_ms):.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api", default=os.environ.get("RELIEF_API_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("RELIEF_TOKEN", ""))
    parser.add_argument("--town", default=os.environ.get("RELIEF_TOWN", "370321001"))
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if not args.token:
        parser.error("a town token is needed: --token or RELIEF_TOKEN (`relief token add`)")
    asyncio.run(run(args.api, args.token, args.town, args.requests, args.concurrency))


if __name__ == "__main__":
    main()
