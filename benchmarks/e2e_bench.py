"""The whole pipeline against the bare one, measured in one run (not a test).

    ./run up --no-demo        # or any Kafka and PostgreSQL in the settings (./run env)
    .venv/bin/python benchmarks/e2e_bench.py --requests 100000
    .venv/bin/python benchmarks/e2e_bench.py --requests 1000000 --skew 0.5 --workers 2
    .venv/bin/python benchmarks/e2e_bench.py --rate 1000 --duration 120   # latency at a steady load

On the servers of the settings, each run on topics and a database of its own (removed
after), it measures:

1. **the bare pipeline**: the same request-sized records produced with aiokafka
   (acks=all, idempotent), consumed, and COPYed into a PostgreSQL table by asyncpg — what
   this machine can move with no service in the way;
2. **the real pipeline**: urgent cases registered through intake (`POST /v1/bulk`, lines
   of `register_case`; `--via single` for one HTTP request each), decided by the processor,
   stored by the ledger and the casebook — every service a process, as `./run up` runs it
   (`--workers`, `--intakes`, `--ledgers`, `--casebooks` to scale it).

Requests are spread over the county's towns; `--skew 0.5` gives one town half of them
(the disaster's town). Each second it samples every stage (accepted, decided, in the
ledger, in the casebook) and prints a line. At the end it accounts: every accepted request
decided once (its first decision in the casebook; as many decision records on the topic as
the casebook holds, so none was written twice), every posting stored once, `verify` on
the ledger; then each stage's rate, request -> decision and request -> ledger latency
(p50/p99, on a sample), and last `e2e/bare = 0.NN`. `--report` appends the figures to a
Markdown file and `--plot` draws throughput and lag over time (matplotlib, `pip install
-e '.[bench]'`). Exit 1 if the accounting fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.local import stack as local_stack  # noqa: E402
from deploy.local.scratch import Running, Shape, whole_stack  # noqa: E402
from relief_platform import kafka_security  # noqa: E402
from relief_platform.topics import ensure_topics  # noqa: E402
from schemas.identity import check_char  # noqa: E402
from schemas.towns import load_county  # noqa: E402

LATENCY_SAMPLE = 20_000  # cases whose latencies are measured (spread over the run)
BULK_LINES = 2_000  # lines per bulk request


# ---------------------------------------------------------------- the load


def resident_id(n: int) -> str:
    """A distinct well-formed (GB 11643) resident ID number per n (22 million of them)."""
    born = date(1950, 1, 1) + timedelta(days=n // 1000)
    first17 = f"370321{born:%Y%m%d}{n % 1000:03d}"
    return first17 + check_char(first17)


def town_of(n: int, towns: Sequence[str], skew: float) -> str:
    """The town of request n: towns[0] takes `skew` of them, the others the rest in turn."""
    if skew > 0 and (n * 0.618033988749895) % 1.0 < skew:
        return towns[0]
    rest = towns[1:] if skew > 0 else towns
    return rest[n % len(rest)]


def case_body(run: str, n: int, town: str) -> dict[str, Any]:
    return {
        "town": town,
        "case_id": f"{run}-{n}",
        "urgency": "urgent",
        "category": "emergency",
        "household_head_id": resident_id(n),
        "requested_fen": 30_000 + (n % 7) * 10_000,
        "reason": "洪水进屋，急需生活救助",
    }


@dataclasses.dataclass
class Load:
    """What the clients sent and what intake answered."""

    sent_at: dict[str, float] = dataclasses.field(default_factory=dict)  # sampled case -> time
    accepted: int = 0
    refused: dict[int, int] = dataclasses.field(default_factory=dict)
    event_ids: list[str] = dataclasses.field(default_factory=list)
    first_s: float = 0.0
    last_s: float = 0.0


class Clients:
    """Registers urgent cases through intake, in bulk or one request each."""

    def __init__(
        self, api: str, tokens: dict[str, str], run: str, towns: Sequence[str], skew: float
    ) -> None:
        self.api = api
        self.tokens = tokens
        self.run = run
        self.towns = towns
        self.skew = skew
        self.load = Load()
        self._every = 1  # every how many-th request's latency is measured

    def _sampled(self, n: int) -> bool:
        return n % self._every == 0

    def _token(self, town: str) -> str:
        return self.tokens[f"town-{town}"]

    def _answered(self, status: int, event_id: str | None) -> None:
        if status == 202 and event_id:
            self.load.accepted += 1
            self.load.event_ids.append(event_id)
        else:
            self.load.refused[status] = self.load.refused.get(status, 0) + 1

    async def bulk(self, http: aiohttp.ClientSession, numbers: Sequence[int]) -> None:
        """One town's lines in one request (a town's token acts for its own town only)."""
        by_town: dict[str, list[int]] = {}
        for n in numbers:
            by_town.setdefault(town_of(n, self.towns, self.skew), []).append(n)
        for town, ns in by_town.items():
            body = b"".join(
                json.dumps(
                    {
                        "type": "register_case",
                        "idempotency_key": f"{self.run}-{n}",
                        "body": case_body(self.run, n, town),
                    },
                    ensure_ascii=False,
                ).encode()
                + b"\n"
                for n in ns
            )
            headers = {
                "Authorization": f"Bearer {self._token(town)}",
                "Content-Type": "application/x-ndjson",
            }
            now = time.time()
            for n in ns:
                if self._sampled(n):
                    self.load.sent_at[f"{self.run}-{n}"] = now
            for attempt in range(6):
                try:
                    async with http.post("/v1/bulk", data=body, headers=headers) as answer:
                        if answer.status != 200:
                            raise RuntimeError(f"bulk: {answer.status} {await answer.text()}")
                        text = await answer.text()
                    break
                except (aiohttp.ClientError, TimeoutError):
                    if attempt == 5:
                        raise
                    await asyncio.sleep(0.5 * 2**attempt)  # same keys again: at most once
            unknown = []
            for line in text.splitlines():
                result = json.loads(line)
                if result["status"] == 503:
                    unknown.append(ns[result["line"] - 1])
                else:
                    self._answered(result["status"], result.get("event_id"))
            if unknown:  # the outcome unknown: the same keys again, as a client must
                await asyncio.sleep(1.0)
                await self.bulk(http, unknown)

    async def single(self, http: aiohttp.ClientSession, n: int) -> None:
        town = town_of(n, self.towns, self.skew)
        case_id = f"{self.run}-{n}"
        headers = {"Authorization": f"Bearer {self._token(town)}", "Idempotency-Key": case_id}
        if self._sampled(n):
            self.load.sent_at[case_id] = time.time()
        for attempt in range(6):
            try:
                async with http.post(
                    "/v1/cases", json=case_body(self.run, n, town), headers=headers
                ) as answer:
                    body = await answer.json(content_type=None)
                    if answer.status != 503:
                        self._answered(answer.status, body.get("event_id"))
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5 * 2**attempt)  # the outcome unknown: same key again
        self._answered(503, None)

    async def run_all(
        self, total: int, via: str, concurrency: int, rate: float | None, first: int = 0
    ) -> None:
        """`total` requests, as fast as intake takes them or at `rate` a second."""
        self._every = max(1, total // LATENCY_SAMPLE)
        timeout = aiohttp.ClientTimeout(total=600)
        connector = aiohttp.TCPConnector(limit=concurrency)
        per = BULK_LINES if via == "bulk" else 1
        if rate is not None and via == "bulk":
            per = max(1, int(rate / 10))  # a tenth of a second's lines per request
        chunks = [
            list(range(s, min(s + per, first + total))) for s in range(first, first + total, per)
        ]
        self.load.first_s = time.time()
        async with aiohttp.ClientSession(self.api, timeout=timeout, connector=connector) as http:
            pending: set[asyncio.Task[None]] = set()
            for k, chunk in enumerate(chunks):
                if rate is not None:  # keep the schedule: request k leaves at k * per / rate
                    delay = self.load.first_s + k * per / rate - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                while len(pending) >= concurrency:
                    _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                work = self.bulk(http, chunk) if via == "bulk" else self.single(http, chunk[0])
                pending.add(asyncio.create_task(work))
                for task in [t for t in pending if t.done()]:
                    task.result()  # a failed client stops the run
                    pending.discard(task)
            for task in pending:
                await task
        self.load.last_s = time.time()


# ---------------------------------------------------------------- watching the stages


@dataclasses.dataclass
class Sample:
    t: float  # seconds since the run began
    accepted: int
    decided: int  # intake records the processor has committed
    decisions: int  # decision records written
    postings: int  # postings records written
    ledger: int  # postings stored by the ledger
    casebook: int  # decisions stored by the casebook


class Watch:
    """Every stage's count, read from Kafka's offsets and the consumers' positions."""

    def __init__(self, running: Running, bootstrap: str, clients: Clients, partitions: int) -> None:
        self.r = running
        self.partitions = partitions
        self.bootstrap = bootstrap
        self.clients = clients
        self.samples: list[Sample] = []
        self.base: dict[str, int] = {}

    async def __aenter__(self) -> Watch:
        opts = kafka_security.client_options()
        self.admin = AIOKafkaAdminClient(**opts, bootstrap_servers=self.bootstrap)
        self.consumer = AIOKafkaConsumer(**opts, bootstrap_servers=self.bootstrap)
        await self.admin.start()
        await self.consumer.start()
        # the owner's role: the accounting makes a temporary table
        pool = await asyncpg.create_pool(self.r.owner_database, min_size=1, max_size=2)
        assert pool is not None
        self.pool = pool
        self.decided_at: dict[str, float] = {}  # sampled case -> when its decision was read
        self._reader = asyncio.create_task(self._read_decisions())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.pool.close()
        await self.consumer.stop()

    async def _read_decisions(self) -> None:
        """Reads the decisions as they are written, noting when each sampled case's first
        one arrives (a record's own stamp is the broker time of its request's batch, so
        it cannot say when the decision was made)."""
        reader = AIOKafkaConsumer(
            **kafka_security.client_options(),
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await reader.start()
        marker = b'"correlation_id":"'
        try:
            reader.assign(
                [TopicPartition(self.r.topics["decisions"], p) for p in range(self.partitions)]
            )
            sent = self.clients.load.sent_at
            while True:
                batch = await reader.getmany(timeout_ms=500, max_records=20_000)
                now = time.time()
                for msgs in batch.values():
                    for m in msgs:
                        value = m.value or b""
                        at = value.find(marker)
                        if at < 0:
                            continue
                        end = value.find(b'"', at + len(marker))
                        case = value[at + len(marker) : end].decode()
                        if case in sent and case not in self.decided_at:
                            self.decided_at[case] = now
        finally:
            await reader.stop()
        await self.admin.close()

    async def ends(self, topic: str) -> dict[int, int]:
        tps = [TopicPartition(topic, p) for p in range(self.partitions)]
        got = await self.consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in got.items()}

    async def committed(self) -> int:
        offsets = await self.admin.list_consumer_group_offsets(self.r.app_id)
        return sum(
            meta.offset
            for tp, meta in offsets.items()
            if tp.topic == self.r.topics["intake"] and meta.offset >= 0
        )

    async def stored(self, sql: str, topic: str) -> int:
        value = await self.pool.fetchval(sql, topic)
        return int(value or 0)

    async def sample(self, began: float) -> Sample:
        decisions = sum((await self.ends(self.r.topics["decisions"])).values())
        postings = sum((await self.ends(self.r.topics["postings"])).values())
        ledger = await self.stored(
            "SELECT sum(n) FROM (SELECT max(next_offset) AS n FROM ledger_positions "
            "WHERE topic = $1 GROUP BY partition) p",
            self.r.topics["postings"],
        )
        casebook = await self.stored(
            "SELECT sum(next_offset) FROM casebook.positions WHERE topic = $1",
            self.r.topics["decisions"],
        )
        s = Sample(
            time.time() - began,
            self.clients.load.accepted,
            await self.committed(),
            decisions,
            postings,
            ledger,
            casebook,
        )
        self.samples.append(s)
        return s

    async def until_drained(
        self, began: float, loading: asyncio.Task[None], timeout_s: float
    ) -> Sample:
        """Samples every second while the load runs, then until every stage has caught up
        with what the processor wrote (its decisions and postings) for the whole load."""
        shown = 0.0
        deadline: float | None = None
        while True:
            s = await self.sample(began)
            if s.t - shown >= 5 or loading.done():
                shown = s.t
                print(
                    f"  {s.t:7.1f} s  accepted {s.accepted:>9,}  decided {s.decided:>9,}  "
                    f"ledger {s.ledger:>9,}/{s.postings:,}  casebook {s.casebook:>9,}/"
                    f"{s.decisions:,}",
                    flush=True,
                )
            if loading.done():
                loading.result()
                intake_end = sum((await self.ends(self.r.topics["intake"])).values())
                if deadline is None:
                    deadline = time.monotonic() + timeout_s
                caught_up = (
                    s.decided >= intake_end - self.ticks_allowance()
                    and s.ledger >= s.postings
                    and s.casebook >= s.decisions
                )
                if caught_up and await self.all_decided():
                    return s
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not drained within {timeout_s:.0f} s: {s}")
            await asyncio.sleep(1.0)

    def ticks_allowance(self) -> int:
        return 50  # the clock's ticks keep coming; the processor commits them in its time

    async def all_decided(self) -> bool:
        found = await self.pool.fetchval(
            "SELECT count(DISTINCT causation_id) FROM casebook.decisions "
            "WHERE case_id LIKE $1 || '-%'",
            self.clients.run,
        )
        return int(found or 0) >= self.clients.load.accepted


def cpu_seconds(running: Running) -> dict[str, float]:
    """CPU seconds used so far by each service (workers, intakes, ledgers summed), by
    the local stack's Kafka brokers and its PostgreSQL, read from /proc (servers of
    another machine are not counted)."""
    tick = os.sysconf("SC_CLK_TCK")

    def of(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    me = os.times()  # this benchmark: the clients, the sampling, the decisions reader
    out: dict[str, float] = {"benchmark client": me.user + me.system}
    for name, proc in zip(running.names, running.procs, strict=True):
        group = name.rsplit("-", 1)[0] if name[-1].isdigit() else name
        out[group] = out.get(group, 0.0) + of(proc.pid)
    # the servers of this stack only: its brokers (their command line names its folder)
    # and its PostgreSQL (the postmaster and its children)
    kafka_home = str(local_stack.kafka_dir())
    try:
        postmaster = int((local_stack.pg_dir() / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        postmaster = -1
    for stat in Path("/proc").glob("[0-9]*/stat"):
        pid = int(stat.parent.name)
        try:
            text = stat.read_text()
            comm = text.split("(", 1)[1].split(")", 1)[0]
            ppid = int(text.rsplit(")", 1)[1].split()[1])
            if comm == "java" and kafka_home in (stat.parent / "cmdline").read_text():
                out["kafka"] = out.get("kafka", 0.0) + of(pid)
            elif comm == "postgres" and postmaster in (pid, ppid):
                out["postgresql"] = out.get("postgresql", 0.0) + of(pid)
        except (OSError, IndexError, ValueError):
            continue
    return out


# ---------------------------------------------------------------- accounting


@dataclasses.dataclass
class Accounts:
    accepted: int
    decided_once: int
    granted: int
    held: int
    decision_records: int
    decisions_stored: int
    posting_records: int
    postings_stored: int
    verify_ok: bool
    problems: list[str]


async def account(r: Running, w: Watch, clients: Clients, bootstrap: str) -> Accounts:
    pool = w.pool
    problems: list[str] = []
    ids = clients.load.event_ids
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("CREATE TEMP TABLE accepted (event_id uuid PRIMARY KEY) ON COMMIT DROP")
        await conn.copy_records_to_table(
            "accepted", records=((uuid.UUID(e),) for e in ids), columns=["event_id"]
        )
        decided = int(
            await conn.fetchval(
                "SELECT count(*) FROM accepted a WHERE EXISTS (SELECT 1 FROM "
                "casebook.decisions d WHERE d.causation_id = a.event_id)"
            )
        )
        twice = int(
            await conn.fetchval(
                "SELECT count(*) FROM (SELECT causation_id FROM casebook.decisions d JOIN "
                "accepted a ON a.event_id = d.causation_id WHERE d.type IN ('AdvanceGranted',"
                " 'AdvanceRefused') GROUP BY causation_id HAVING count(*) > 1) x"
            )
        )
        # every advance granted is held on the ledger, once (its posting id is derived);
        # a hash join, not a lookup per decision (no index on (town, correlation_id): the
        # correlated EXISTS ran past 10 minutes at a million)
        row = await conn.fetchrow(
            """SELECT count(*), count(e.found)
                 FROM casebook.decisions d JOIN accepted a ON a.event_id = d.causation_id
                 LEFT JOIN (SELECT DISTINCT town, correlation_id, true AS found
                              FROM ledger_entries) e
                   ON e.town = d.town AND e.correlation_id = d.case_id
                WHERE d.type = 'AdvanceGranted'"""
        )
        assert row is not None
        granted, held = row
    if granted != held:
        problems.append(f"{granted - held:,} advances granted but not on the ledger")
    if decided != len(ids):
        problems.append(f"{len(ids) - decided:,} accepted requests have no decision")
    if twice:
        problems.append(f"{twice:,} requests were granted or refused more than once")
    decision_records = sum((await w.ends(r.topics["decisions"])).values())
    decisions_stored = int(await pool.fetchval("SELECT count(*) FROM casebook.decisions"))
    if decision_records != decisions_stored:
        problems.append(
            f"{decision_records:,} decision records on the topic, {decisions_stored:,} distinct "
            "in the casebook: some decision was written twice"
        )
    posting_records = sum((await w.ends(r.topics["postings"])).values())
    postings_stored = int(await pool.fetchval("SELECT count(*) FROM ledger_entries"))
    if posting_records != postings_stored:
        problems.append(
            f"{posting_records:,} posting records, {postings_stored:,} entries in the ledger"
        )
    verify = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.ledger",
        "verify",
        cwd=ROOT,
        env=r.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    said, _ = await verify.communicate()
    if verify.returncode != 0:
        problems.append("ledger verify: " + said.decode()[-500:])
    return Accounts(
        len(ids),
        decided,
        int(granted),
        int(held),
        decision_records,
        decisions_stored,
        posting_records,
        postings_stored,
        verify.returncode == 0,
        problems,
    )


async def latencies(
    pool: asyncpg.Pool, clients: Clients, postings_topic: str, decided_at: dict[str, float]
) -> dict[str, list[float]]:
    """Request -> its first decision read from Kafka, and request -> ledger commit (the
    ledger's position row of the batch that stored the case's first posting), in ms."""
    sent = clients.load.sent_at
    cases = list(sent)
    stored = await pool.fetch(
        """SELECT e.correlation_id AS case_id, min(p.stored_at) AS at
             FROM ledger_entries e
             JOIN LATERAL (SELECT stored_at FROM ledger_positions p
                            WHERE p.topic = $2 AND p.partition = e.source_partition
                              AND p.next_offset > e.source_offset
                            ORDER BY p.next_offset LIMIT 1) p ON true
            WHERE e.correlation_id = ANY($1::text[])
            GROUP BY e.correlation_id""",
        cases,
        postings_topic,
    )
    out: dict[str, list[float]] = {
        "decision": sorted((at - sent[case]) * 1000 for case, at in decided_at.items()),
        "ledger": [],
    }
    for row in stored:
        if row["at"] is not None:
            out["ledger"].append((row["at"].timestamp() - sent[row["case_id"]]) * 1000)
    out["ledger"].sort()
    return out


def pct(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


# ---------------------------------------------------------------- the bare pipeline


BARE_COLUMNS = ["event_id", "town", "case_id", "recorded_at", "body"]


async def bare_pipeline(
    info: local_stack.StackInfo, total: int, partitions: int, towns: Sequence[str], skew: float
) -> tuple[float, list[tuple[float, int, int, int]]]:
    """Produce (acks=all, idempotent) -> consume -> COPY of request-sized records, on a
    topic and a table of their own. Returns records/s end to end and its samples (t,
    produced, consumed, copied)."""
    run = f"bare{uuid.uuid4().hex[:8]}"
    topic = f"bench.bare.{run}"
    # replicated as the service's topics are (3, min.insync.replicas 2 on a cluster)
    rf, isr = local_stack.replication(len(info.kafka_bootstrap.split(",")))
    await ensure_topics(
        info.kafka_bootstrap,
        partitions=partitions,
        replication_factor=rf,
        names={topic: {"min.insync.replicas": str(isr)}},
    )
    db = f"bench_{run}"
    admin_db = info.admin_url.rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin_db)
    await conn.execute(f'CREATE DATABASE "{db}" OWNER "{local_stack.OWNER_ROLE}"')
    await conn.close()
    url = info.owner_url.rsplit("/", 1)[0] + f"/{db}"
    opts = kafka_security.client_options()
    samples: list[tuple[float, int, int, int]] = []
    produced = consumed = copied = 0
    try:
        pg = await asyncpg.connect(url)
        await pg.execute(
            "CREATE TABLE requests (event_id uuid PRIMARY KEY, town text NOT NULL, "
            "case_id text NOT NULL, recorded_at timestamptz NOT NULL, body jsonb NOT NULL)"
        )
        producer = AIOKafkaProducer(
            **opts,
            bootstrap_servers=info.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
        )
        consumer = AIOKafkaConsumer(
            topic,
            **opts,
            bootstrap_servers=info.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await producer.start()
        await consumer.start()
        began = time.time()

        async def produce() -> None:
            nonlocal produced
            for start in range(0, total, 5_000):
                futures = []
                for n in range(start, min(start + 5_000, total)):
                    town = town_of(n, towns, skew)
                    record = {
                        "event_id": str(uuid.uuid4()),
                        "type": "ReliefRequested",
                        "schema_version": 1,
                        "town": town,
                        "correlation_id": f"{run}-{n}",
                        "occurred_at": datetime.now(UTC).isoformat(),
                        "body": case_body(run, n, town),
                    }
                    value = json.dumps(record, ensure_ascii=False).encode()
                    futures.append(await producer.send(topic, value, key=town.encode()))
                await asyncio.gather(*futures)
                produced += len(futures)

        async def consume_and_copy() -> None:
            nonlocal consumed, copied
            while copied < total:
                batch = await consumer.getmany(timeout_ms=500, max_records=5_000)
                rows = []
                for msgs in batch.values():
                    for m in msgs:
                        rec = json.loads(m.value or b"{}")
                        rows.append(
                            (
                                uuid.UUID(rec["event_id"]),
                                rec["town"],
                                rec["correlation_id"],
                                datetime.fromtimestamp(m.timestamp / 1000, UTC),
                                json.dumps(rec["body"], ensure_ascii=False),
                            )
                        )
                consumed += len(rows)
                if rows:
                    await pg.copy_records_to_table("requests", records=rows, columns=BARE_COLUMNS)
                    copied += len(rows)

        async def watch() -> None:
            while copied < total:
                samples.append((time.time() - began, produced, consumed, copied))
                await asyncio.sleep(1.0)

        await asyncio.gather(produce(), consume_and_copy(), watch())
        took = time.time() - began
        samples.append((took, produced, consumed, copied))
        await producer.stop()
        await consumer.stop()
        await pg.close()
        return total / took, samples
    finally:
        conn = await asyncpg.connect(admin_db)
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await conn.close()
        await delete_topics(info.kafka_bootstrap, [topic])


async def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka_security.client_options(), bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(Exception):  # a scratch topic left behind is harmless
            await admin.delete_topics(list(names))
    finally:
        await admin.close()


# ---------------------------------------------------------------- one run


@dataclasses.dataclass
class Result:
    label: str
    requests: int
    bare_rate: float
    bare_samples: list[tuple[float, int, int, int]]
    intake_rate: float
    e2e_rate: float
    e2e_s: float
    samples: list[Sample]
    lat: dict[str, list[float]]
    accounts: Accounts
    shape: Shape
    via: str
    skew: float
    cpu: dict[str, float]  # CPU seconds each part used during the run

    @property
    def ratio(self) -> float:
        return self.e2e_rate / self.bare_rate if self.bare_rate else float("nan")


def configured_info() -> local_stack.StackInfo:
    local = local_stack.local_info()
    return local_stack.StackInfo(
        kafka_bootstrap=os.environ.get("RELIEF_KAFKA_BOOTSTRAP", local.kafka_bootstrap),
        admin_url=os.environ.get("RELIEF_DATABASE_ADMIN_URL", local.admin_url),
        owner_url=os.environ.get("RELIEF_DATABASE_OWNER_URL", local.owner_url),
        app_url=os.environ.get("RELIEF_DATABASE_URL", local.app_url),
    )


@contextlib.contextmanager
def scratch(info: local_stack.StackInfo, shape: Shape) -> Iterator[Running]:
    with (
        tempfile.TemporaryDirectory(prefix="e2e-bench-") as tmp,
        whole_stack(info, Path(tmp), shape) as running,
    ):
        try:
            yield running
        finally:
            keep = Path(tempfile.gettempdir()) / f"e2e-bench-logs-{shape.name}"
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(running.logs, keep)  # the services' logs, after the run


async def real_pipeline(
    info: local_stack.StackInfo,
    running: Running,
    partitions: int,
    total: int,
    via: str,
    concurrency: int,
    rate: float | None,
    skew: float,
    timeout_s: float,
) -> tuple[Clients, list[Sample], float, float, dict[str, list[float]], Accounts, dict[str, float]]:
    towns = load_county().codes()
    run = f"e2e{uuid.uuid4().hex[:6]}"
    clients = Clients(running.intake, running.tokens, run, towns, skew)
    async with Watch(running, info.kafka_bootstrap, clients, partitions) as watch:
        cpu_before = cpu_seconds(running)
        began = time.time()
        loading = asyncio.create_task(clients.run_all(total, via, concurrency, rate))
        last = await watch.until_drained(began, loading, timeout_s)
        cpu_after = cpu_seconds(running)
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_after.items()}
        intake_s = clients.load.last_s - clients.load.first_s
        e2e_s = last.t
        lat = await latencies(watch.pool, clients, running.topics["postings"], watch.decided_at)
        accounts = await account(running, watch, clients, info.kafka_bootstrap)
    return clients, watch.samples, intake_s, e2e_s, lat, accounts, cpu


async def one_run(args: argparse.Namespace, skew: float, label: str) -> Result:
    info = configured_info()
    towns = load_county().codes()
    total = args.requests if args.rate is None else int(args.rate * args.duration)
    bare_samples: list[tuple[float, int, int, int]] = []
    if args.no_bare:
        bare_rate = float("nan")
    else:
        print(
            f"[{label}] bare pipeline: {total:,} records, {args.partitions} partitions", flush=True
        )
        bare_rate, bare_samples = await bare_pipeline(info, total, args.partitions, towns, skew)
        print(f"[{label}] bare: {bare_rate:,.0f} records/s", flush=True)
    shape = Shape(
        partitions=args.partitions,
        workers=args.workers,
        intakes=args.intakes,
        ledgers=args.ledgers,
        casebooks=args.casebooks,
        console=False,
        name="e2ebench",
    )
    print(
        f"[{label}] real pipeline: {total:,} urgent requests via {args.via}, {shape.workers} "
        f"worker(s), {shape.intakes} intake(s), {shape.ledgers} ledger and {shape.casebooks} "
        "casebook consumer(s)",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    stack_cm = scratch(info, shape)
    running = await loop.run_in_executor(None, stack_cm.__enter__)
    try:
        clients, samples, intake_s, e2e_s, lat, accounts, cpu = await real_pipeline(
            info,
            running,
            args.partitions,
            total,
            args.via,
            args.concurrency,
            args.rate,
            skew,
            args.timeout,
        )
    finally:
        await loop.run_in_executor(None, stack_cm.__exit__, None, None, None)
        await delete_topics(info.kafka_bootstrap, list(running.topics.values()))
    accepted = clients.load.accepted
    return Result(
        label,
        total,
        bare_rate,
        bare_samples,
        accepted / intake_s if intake_s else float("nan"),
        accepted / e2e_s if e2e_s else float("nan"),
        e2e_s,
        samples,
        lat,
        accounts,
        shape,
        args.via,
        skew,
        cpu,
    )


# ---------------------------------------------------------------- the report


def stage_rates(samples: Sequence[Sample]) -> dict[str, float]:
    """Each stage's rate over the time it was moving: from the second before its count
    first rose to the sample where it reached its final count."""
    out: dict[str, float] = {}
    for name in ("accepted", "decided", "ledger", "casebook"):
        values = [(s.t, getattr(s, name)) for s in samples]
        if len(values) < 2:
            continue
        start, end = values[0][1], values[-1][1]
        rose = next((t for t, v in values if v > start), None)
        if rose is None:
            continue
        reached = next(t for t, v in values if v == end)
        out[name] = (end - start) / max(reached - (rose - 1.0), 1e-9)
    return out


def summary(r: Result) -> list[str]:
    rates = stage_rates(r.samples)
    a = r.accounts
    dec, led = r.lat["decision"], r.lat["ledger"]
    lines = [
        f"[{r.label}] requests {r.requests:,}  accepted {a.accepted:,}  via {r.via}  "
        f"one town's share {r.skew:.0%}",
        f"[{r.label}] bare pipeline              {r.bare_rate:>9,.0f} records/s"
        if r.bare_rate == r.bare_rate  # nan: not run
        else f"[{r.label}] bare pipeline              not run (--no-bare)",
        f"[{r.label}] intake (accepted)          {r.intake_rate:>9,.0f} requests/s",
        f"[{r.label}] processor (decided)        {rates.get('decided', float('nan')):>9,.0f} "
        "intake records/s",
        f"[{r.label}] ledger (stored)            {rates.get('ledger', float('nan')):>9,.0f} "
        "postings/s",
        f"[{r.label}] casebook (stored)          {rates.get('casebook', float('nan')):>9,.0f} "
        "decisions/s",
        f"[{r.label}] end to end                 {r.e2e_rate:>9,.0f} requests/s "
        f"({r.e2e_s:,.0f} s for all)",
        f"[{r.label}] request -> decision  p50 {pct(dec, 50):,.0f} ms  p99 {pct(dec, 99):,.0f} ms"
        f"  ({len(dec):,} sampled)",
        f"[{r.label}] request -> ledger    p50 {pct(led, 50):,.0f} ms  p99 {pct(led, 99):,.0f} ms",
        f"[{r.label}] accounted: decided once {a.decided_once:,}/{a.accepted:,}; advances "
        f"granted {a.granted:,}, on the ledger {a.held:,}; decision "
        f"records {a.decision_records:,} = stored {a.decisions_stored:,}; postings "
        f"{a.posting_records:,} = stored {a.postings_stored:,}; verify "
        + ("ok" if a.verify_ok else "FAILED"),
    ]
    lines += [f"[{r.label}] PROBLEM: {p}" for p in a.problems]
    if r.cpu and a.accepted:
        total = sum(r.cpu.values())
        parts = ", ".join(
            f"{k} {v * 1000 / a.accepted:.2f}"
            for k, v in sorted(r.cpu.items(), key=lambda kv: -kv[1])
            if v > 0
        )
        lines.append(
            f"[{r.label}] CPU ms a request: {parts}; all {total * 1000 / a.accepted:.2f} "
            f"({total / r.e2e_s:.2f} of {os.cpu_count()} cores busy)"
        )
    return lines


def _per_second(t: Sequence[float], v: Sequence[float], window_s: float = 5.0) -> list[float]:
    """The rate over the last `window_s` seconds at each sample (smooths Faust's commits)."""
    out: list[float] = []
    first = 0
    for i in range(len(t)):
        while t[i] - t[first] > window_s:
            first += 1
        span = t[i] - t[first]
        out.append((v[i] - v[first]) / span if span > 0 else 0.0)
    return out


def plot(results: Sequence[Result], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (pip install -e '.[bench]')")
        return
    with_bare = any(r.bare_samples for r in results)  # no empty panel for --no-bare
    columns = 3 if with_bare else 2
    fig, axes = plt.subplots(
        len(results), columns, figsize=(16 * columns / 3, 4 * len(results)), squeeze=False
    )
    for row, r in zip(axes, results, strict=True):
        real, lag = row[-2:]
        if with_bare:
            bare = row[0]
            bt = [s[0] for s in r.bare_samples]
            for k, label in ((1, "produced (acks=all)"), (2, "consumed"), (3, "copied")):
                bare.plot(bt, _per_second(bt, [s[k] for s in r.bare_samples]), label=label)
            if r.bare_samples:
                bare.legend(fontsize=8)
            bare.set_title(f"{r.label}: bare pipeline (records/s, 5 s window)")
            bare.set_xlabel("seconds")
        t = [s.t for s in r.samples]
        for name, label in (
            ("accepted", "intake: accepted"),
            ("decided", "processor: decided (committed)"),
            ("ledger", "ledger: postings stored"),
            ("casebook", "casebook: decisions stored"),
        ):
            real.plot(t, _per_second(t, [getattr(s, name) for s in r.samples]), label=label)
        real.set_title(f"{r.label}: the service (records/s, 5 s window)")
        real.set_xlabel("seconds")
        real.legend(fontsize=8)
        lag.plot(
            t,
            [s.accepted - min(s.decided, s.accepted) for s in r.samples],
            label="processor (requests)",
        )
        lag.plot(t, [s.postings - s.ledger for s in r.samples], label="ledger (postings)")
        lag.plot(t, [s.decisions - s.casebook for s in r.samples], label="casebook (decisions)")
        lag.set_title(f"{r.label}: lag behind the stage before")
        lag.set_xlabel("seconds")
        lag.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"plot: {path}")


def ratio_line(r: Result) -> str:
    """The last line: the whole pipeline's rate over the bare one's, measured in one run."""
    if r.ratio != r.ratio:  # nan: the bare pipeline was not run
        return "e2e/bare: not measured (--no-bare)"
    return f"e2e/bare = {r.ratio:.2f}"


def report(
    results: Sequence[Result], path: Path, plot_path: Path | None, argv: Sequence[str]
) -> None:
    lines = [
        "",
        f"## End to end, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"`python benchmarks/e2e_bench.py {' '.join(argv)}` on {os.cpu_count()} cores "
        f"({platform.machine()}, Python {platform.python_version()}).",
        "",
        "```",
        *[line for r in results for line in summary(r)],
        *[f"{ratio_line(r)}  ({r.label})" for r in results],
        "```",
        "",
    ]
    if plot_path is not None:
        lines += [f"![throughput and lag over time]({os.path.relpath(plot_path, path.parent)})", ""]
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"report appended to {path}")


async def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--skew", type=float, default=None, help="one town's share (0..1)")
    parser.add_argument(
        "--both", action="store_true", help="a spread run, then one with one town taking half"
    )
    parser.add_argument("--via", choices=("bulk", "single"), default="bulk")
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--rate", type=float, default=None, help="requests/s, steady")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds, with --rate")
    parser.add_argument("--partitions", type=int, default=9)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--intakes", type=int, default=1)
    parser.add_argument("--ledgers", type=int, default=1)
    parser.add_argument("--casebooks", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3_600.0, help="seconds to drain")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare pipeline")
    parser.add_argument("--report", type=Path, default=None, help="append to this Markdown file")
    parser.add_argument("--plot", type=Path, default=None, help="a PNG of throughput and lag")
    args = parser.parse_args(argv)
    if args.report is not None and args.plot is not None:
        report_dir = args.report.resolve().parent
        if not args.plot.resolve().is_relative_to(report_dir):
            parser.error(f"--plot must be under {report_dir}: the report links the plot")
    if args.concurrency is None:
        args.concurrency = 4 if args.via == "bulk" else 64
    runs: list[tuple[float, str]]
    if args.both:
        runs = [(0.0, "spread"), (0.5, "one town half")]
    else:
        skew = args.skew or 0.0
        runs = [(skew, "one town " + f"{skew:.0%}" if skew else "spread")]
    if args.rate is not None:
        runs = [(s, f"{label}, {args.rate:,.0f}/s steady") for s, label in runs]
    results = [await one_run(args, skew, label) for skew, label in runs]
    for r in results:
        print("\n".join(summary(r)))
    if args.plot is not None:
        plot(results, args.plot)
    if args.report is not None:
        report(results, args.report, args.plot, argv)
    for r in results:
        print(ratio_line(r))
    return 0 if all(not r.accounts.problems for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
