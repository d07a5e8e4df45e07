"""Bulk intake throughput (POST /v1/bulk), against a running intake (not a test).

    RELIEF_API_URL=http://127.0.0.1:8080 RELIEF_TOKEN=<a town token> RELIEF_TOWN=370321001 \
        .venv/bin/python benchmarks/bulk_bench.py --lines 20000 --per-request 2000

Registers N urgent cases, each line with its own idempotency key, sent in requests of
--per-request lines (--concurrency of them at once); every 202 is a record Kafka
acknowledged (acks=all). Prints accepted lines/s and each request's duration. Point the
intake at a scratch topic (RELIEF_INTAKE_TOPIC) unless you want the cases decided.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections import Counter
from datetime import date

import httpx

from schemas.identity import check_char


def resident_id(n: int) -> str:
    born = date(1950 + n % 50, 1 + n % 12, 1 + n % 28)
    first17 = f"370321{born:%Y%m%d}{n % 1000:03d}"
    return first17 + check_char(first17)


def lines(run_id: str, town: str, start: int, count: int) -> bytes:
    out = []
    for i in range(start, start + count):
        body = {
            "town": town,
            "case_id": f"bulk-{run_id}-{i}",
            "urgency": "urgent",
            "category": "emergency",
            "household_head_id": resident_id(i),
            "requested_fen": 50_000,
            "reason": "flood",
        }
        line = {"type": "register_case", "idempotency_key": f"bulk-{run_id}-{i}", "body": body}
        out.append(json.dumps(line))
    return ("\n".join(out) + "\n").encode()


async def run(api: str, token: str, town: str, total: int, per: int, concurrency: int) -> None:
    run_id = uuid.uuid4().hex[:8]
    statuses: Counter[int] = Counter()
    durations_s: list[float] = []
    starts = list(range(0, total, per))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    async with httpx.AsyncClient(base_url=api, timeout=300) as client:

        async def worker() -> None:
            while starts:
                start = starts.pop(0)
                body = lines(run_id, town, start, min(per, total - start))
                began = time.perf_counter()
                answer = await client.post("/v1/bulk", content=body, headers=headers)
                durations_s.append(time.perf_counter() - began)
                answer.raise_for_status()
                for text in answer.text.splitlines():
                    statuses[json.loads(text)["status"]] += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed_s = time.perf_counter() - began
    accepted = statuses.get(202, 0)
    print(f"lines: {total}  per request: {per}  concurrency: {concurrency}")
    print(f"statuses: {dict(sorted(statuses.items()))}")
    print(
        f"request seconds: min {min(durations_s):.2f}  max {max(durations_s):.2f}  "
        f"mean {sum(durations_s) / len(durations_s):.2f}"
    )
    print(f"elapsed {elapsed_s:.2f} s  accepted {accepted / elapsed_s:,.0f} lines/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--per-request", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(
        run(
            os.environ.get("RELIEF_API_URL", "http://127.0.0.1:8080"),
            os.environ["RELIEF_TOKEN"],
            os.environ.get("RELIEF_TOWN", "370321001"),
            args.lines,
            args.per_request,
            args.concurrency,
        )
    )


if __name__ == "__main__":
    main()
