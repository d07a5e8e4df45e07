"""Intake API throughput and latency, against a running intake (not a test).

    RELIEF_API_URL=http://127.0.0.1:8080 RELIEF_TOKEN=<a town token> RELIEF_TOWN=370321001 \
        .venv/bin/python benchmarks/intake_bench.py --requests 2000 --concurrency 32
    ... benchmarks/intake_bench.py --client wrk --duration 15 --concurrency 64

Each request registers an urgent case with its own Idempotency-Key, so every 202 is a
record Kafka acknowledged (acks=all). Prints accepted requests/s and latency percentiles.
Point the intake at a scratch topic (RELIEF_INTAKE_TOPIC) unless you want the cases decided.

Two clients: this script's own (aiohttp, a fixed number of requests, every answer timed)
and wrk (`apt-get install wrk`), a load generator in C, for a fixed time. On a machine
whose cores the intake shares with its client, the client's cost is part of what is
measured: aiohttp spends ~0.3 ms of CPU a request, wrk a tenth of that, so wrk's figure is
the one that says what intake accepts when its callers are elsewhere (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import tempfile
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


# wrk's requests, each a new case with its own key; the answers counted by status in each
# thread and summed at the end (wrk's own summary counts a 409 or a 503 as an answer)
WRK_SCRIPT = """
local ids = {%(ids)s}
local token, town, run = "%(token)s", "%(town)s", "%(run)s"
local threads, made = {}, 0
function setup(thread)
  thread:set("tid", made)
  made = made + 1
  table.insert(threads, thread)
end
sent, statuses = 0, {}  -- globals: done() reads them with thread:get
function request()
  sent = sent + 1
  local n = tid * 1000000000 + sent
  local body = string.format(
    '{"town":"%%s","case_id":"wrk-%%s-%%d","urgency":"urgent","category":"emergency",' ..
    '"household_head_id":"%%s","requested_fen":50000,"reason":"benchmark"}',
    town, run, n, ids[(sent %% #ids) + 1])
  return wrk.format("POST", "/v1/cases", {
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = "wrk-" .. run .. "-" .. n,
    ["Content-Type"] = "application/json"}, body)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local all = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do all[status] = (all[status] or 0) + n end
  end
  for status, n in pairs(all) do io.write(string.format("status %%d %%d\\n", status, n)) end
  io.write(string.format("seconds %%.3f\\n", summary.duration / 1e6))
  for _, p in ipairs({50, 95, 99}) do
    io.write(string.format("percentile %%d %%.1f\\n", p, latency:percentile(p) / 1000))
  end
  io.write(string.format("percentile max %%.1f\\n", latency.max / 1000))
end
"""


def run_wrk(
    api: str, token: str, town: str, duration_s: int, concurrency: int, threads: int
) -> None:
    """A fixed time of wrk: accepted requests/s and the latency of every answer."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk, or --client aiohttp")
    ids = ",".join(f'"{resident_id(i)}"' for i in range(1_000))
    script = WRK_SCRIPT % {"ids": ids, "token": token, "town": town, "run": uuid.uuid4().hex[:8]}
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as file:
        file.write(script)
        file.flush()
        command = [wrk, f"-t{threads}", f"-c{concurrency}", f"-d{duration_s}s", "-s", file.name]
        done = subprocess.run(  # noqa: S603 (wrk found on PATH, arguments built here)
            [*command, api], capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()  # wrk prints its usage to stdout
        raise SystemExit(f"wrk failed ({done.returncode}): {said}")
    statuses = Counter({int(k): int(n) for k, n in re.findall(r"status (\d+) (\d+)", done.stdout)})
    seconds_line = re.search(r"seconds ([\d.]+)", done.stdout)
    if seconds_line is None:
        raise SystemExit(f"wrk printed no summary:\n{done.stdout}")
    seconds = float(seconds_line[1])
    accepted = statuses.get(202, 0)
    errors = re.search(r"Socket errors:.*", done.stdout)
    latency = dict(re.findall(r"percentile (\w+) ([\d.]+)", done.stdout))
    print(f"wrk, {duration_s} s, {concurrency} connections, {threads} threads, {seconds:.2f} s")
    print(f"statuses {dict(sorted(statuses.items()))}" + (f" ({errors[0]})" if errors else ""))
    print(f"accepted {accepted / seconds:,.0f} requests/s")
    print(
        f"latency_ms (every answer, whatever its status) p50 {latency['50']}  p95 {latency['95']}  "
        f"p99 {latency['99']}  max {latency['max']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api", default=os.environ.get("RELIEF_API_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("RELIEF_TOKEN", ""))
    parser.add_argument("--town", default=os.environ.get("RELIEF_TOWN", "370321001"))
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--client", choices=("aiohttp", "wrk"), default="aiohttp")
    parser.add_argument("--duration", type=int, default=15, help="whole seconds, with wrk")
    parser.add_argument("--threads", type=int, default=1, help="wrk's threads")
    args = parser.parse_args()
    if not args.token:
        parser.error("a town token is needed: --token or RELIEF_TOKEN (`relief token add`)")
    if args.client == "wrk":
        run_wrk(args.api, args.token, args.town, args.duration, args.concurrency, args.threads)
        return
    asyncio.run(run(args.api, args.token, args.town, args.requests, args.concurrency))


if __name__ == "__main__":
    main()
