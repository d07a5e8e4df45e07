"""The consumer against the real Kafka broker and PostgreSQL: exactly once into the book,
dead letters for what cannot be read, crash anywhere, replay into an empty database."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from schemas.postings import Posting
from schemas.registry import encode
from services.ledger.adapters import postgres
from services.ledger.adapters.kafka import LedgerConsumer
from tests.integration.ledger.conftest import SEALER, LedgerDb, ledger_database
from tests.unit.ledger.stories import QIFENG, SUOZHEN, TANGSHAN, flood, funded, granted

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
PARTITIONS = 3
WAIT_S = 90.0


async def make_topics(stack: local_stack.StackInfo, unique: str) -> tuple[str, str]:
    topic, rejected = f"test.ledger.postings.{unique}", f"test.ledger.rejected.{unique}"
    await ensure_topics(
        stack.kafka_bootstrap, partitions=PARTITIONS, names={topic: {}, rejected: {}}
    )
    return topic, rejected


async def produce(
    stack: local_stack.StackInfo,
    topic: str,
    values: Sequence[tuple[str, bytes]],
    timestamp_ms: int | None = None,
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=True, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        # keyed by town (contracts.md): one town's postings stay in order on one partition
        sends = [
            await producer.send(topic, key=k.encode(), value=v, timestamp_ms=timestamp_ms)
            for k, v in values
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


def records(postings: Sequence[Posting]) -> list[tuple[str, bytes]]:
    return [(p.town, encode(p)) for p in postings]


async def in_book(db: LedgerDb) -> int:
    return int(
        await db.pool.fetchval(
            "SELECT (SELECT count(*) FROM ledger_entries) + (SELECT count(*) FROM ledger_alerts)"
        )
    )


async def wait_for(db: LedgerDb, want: int, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await in_book(db) >= want:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"only {await in_book(db)} of {want} postings reached the book")


class Consumers:
    """In-process consumers (the same code as `python -m services.ledger run`)."""

    def __init__(self) -> None:
        self.running: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = {}

    def start(
        self,
        db: LedgerDb,
        stack: local_stack.StackInfo,
        topic: str,
        rejected: str,
        batch: int = 500,
    ) -> LedgerConsumer:
        consumer = LedgerConsumer(
            postgres.LedgerStore(db.pool, SEALER),
            bootstrap=stack.kafka_bootstrap,
            topic=topic,
            rejected_topic=rejected,
            batch_max_postings=batch,
            poll_timeout_ms=100,
        )
        stop = asyncio.Event()
        self.running[id(consumer)] = (stop, asyncio.create_task(consumer.run(stop)))
        return consumer

    async def stop(self, consumer: LedgerConsumer) -> None:
        stop, task = self.running.pop(id(consumer))
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def consumers() -> AsyncIterator[Consumers]:
    running = Consumers()
    yield running
    for key in list(running.running):
        stop, task = running.running.pop(key)
        stop.set()
        await asyncio.wait_for(task, 30)


async def journal(db: LedgerDb) -> list[tuple[object, ...]]:
    rows = await db.pool.fetch(
        "SELECT chain, chain_seq, posting_id, prev_hash, hash FROM ledger_entries "
        "ORDER BY chain, chain_seq"
    )
    return [tuple(r) for r in rows]


async def alerts_of(db: LedgerDb) -> list[tuple[object, ...]]:
    rows = await db.pool.fetch(
        "SELECT posting_id, account, balance_fen, change_fen FROM ledger_alerts ORDER BY posting_id"
    )
    return [tuple(r) for r in rows]


# ---------------------------------------------------------------- once, and dead letters


async def test_postings_delivered_twice_are_stored_once(
    stack: local_stack.StackInfo, unique: str, ledger_db: LedgerDb, consumers: Consumers
) -> None:
    topic, rejected = await make_topics(stack, unique)
    story = flood(60)
    # the processor crashed and re-sent half of its postings: the same ids, twice on the log
    await produce(stack, topic, records(story) + records(story[: len(story) // 2]))
    consumer = consumers.start(ledger_db, stack, topic, rejected)
    await wait_for(ledger_db, len(story))
    await asyncio.sleep(1.0)  # let the duplicates arrive too
    assert await in_book(ledger_db) == len(story)
    assert consumer.duplicates >= len(story) // 2
    assert (await postgres.verify(ledger_db.app_url, SEALER)).ok


async def test_an_unreadable_record_goes_to_rejected_and_later_records_flow(
    stack: local_stack.StackInfo, unique: str, ledger_db: LedgerDb, consumers: Consumers
) -> None:
    topic, rejected = await make_topics(stack, unique)
    fund, grant = funded(SUOZHEN), granted(SUOZHEN, 1, 10_000)
    unbalanced = json.loads(encode(granted(SUOZHEN, 2, 500)))
    unbalanced["lines"][0]["amount_fen"] = 501
    # the bad ones stamped by their producer an hour ago: their dead letters carry that
    # stamp, not the ledger's clock (every output is stamped with its record's broker time)
    stamped = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    await produce(stack, topic, [(SUOZHEN, encode(fund))])
    await produce(
        stack,
        topic,
        [
            (SUOZHEN, b"{not json"),
            (SUOZHEN, json.dumps(unbalanced).encode()),
            (SUOZHEN, b'{"type": "Nonsense", "schema_version": 1}'),
        ],
        timestamp_ms=int(stamped.timestamp() * 1000),
    )
    await produce(stack, topic, [(SUOZHEN, encode(grant))])
    consumers.start(ledger_db, stack, topic, rejected)
    await wait_for(ledger_db, 2)

    dead = AIOKafkaConsumer(
        rejected,
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await dead.start()
    try:
        got: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            for batch in (await dead.getmany(timeout_ms=500)).values():
                got.extend(json.loads(r.value or b"{}") for r in batch)
    finally:
        await dead.stop()
    assert len(got) == 3
    assert all(g["type"] == "RejectedRecord" and g["source_topic"] == topic for g in got)
    reasons = " | ".join(str(g["reason"]) for g in got)
    assert "not JSON" in reasons and "unbalanced" in reasons and "Nonsense" in reasons
    assert [g["offset"] for g in got] == [1, 2, 3]
    assert {datetime.fromisoformat(str(g["rejected_at"])) for g in got} == {stamped}
    assert (await postgres.reserve_balances(ledger_db.pool))[SUOZHEN] == 5_000_000 - 10_000
    positions = await postgres.LedgerStore(ledger_db.pool, SEALER).positions(topic)
    assert sum(positions.values()) == 5  # the dead letters' positions are stored too


# ---------------------------------------------------------------- crash anywhere


def run_ledger(
    db: LedgerDb, stack: local_stack.StackInfo, topic: str, rejected: str, **extra: str
) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELIEF_LEDGER_")},
        "RELIEF_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "RELIEF_DATABASE_URL": db.app_url,
        "RELIEF_DATABASE_OWNER_URL": db.owner_url,
        "RELIEF_LEDGER_TOPIC": topic,
        "RELIEF_LEDGER_REJECTED_TOPIC": rejected,
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.ledger", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def check_each_once(db: LedgerDb, story: Sequence[Posting], topic: str) -> None:
    ids = [p.posting_id for p in story]
    rows = await db.pool.fetch(
        "SELECT posting_id FROM ledger_entries UNION ALL SELECT posting_id FROM ledger_alerts"
    )
    stored = [r["posting_id"] for r in rows]
    assert len(stored) == len(set(stored)), "a posting was stored twice"
    assert set(stored) == set(ids), "a posting was lost"
    report = await postgres.verify(db.app_url, SEALER)
    assert report.ok, report.problems
    positions = await postgres.LedgerStore(db.pool, SEALER).positions(topic)
    assert sum(positions.values()) == len(story)


async def test_sigkill_right_after_the_postgresql_commit_then_restart(
    stack: local_stack.StackInfo, unique: str, ledger_db: LedgerDb
) -> None:
    topic, rejected = await make_topics(stack, unique)
    story = flood(200)
    await produce(stack, topic, records(story))
    # dies by SIGKILL just after its second commit: nothing after the commit ever runs
    first = run_ledger(
        ledger_db,
        stack,
        topic,
        rejected,
        RELIEF_LEDGER_CRASH_AFTER_COMMITS="2",
        RELIEF_LEDGER_BATCH_MAX_POSTINGS="50",
    )
    assert await asyncio.to_thread(first.wait, 60) == -signal.SIGKILL
    assert 0 < await in_book(ledger_db) < len(story)
    second = run_ledger(ledger_db, stack, topic, rejected)
    try:
        await wait_for(ledger_db, len(story))
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 30)
    await check_each_once(ledger_db, story, topic)


async def test_sigkill_at_random_moments_mid_stream(
    stack: local_stack.StackInfo, unique: str, ledger_db: LedgerDb
) -> None:
    topic, rejected = await make_topics(stack, unique)
    story = flood(1_000, max_grant_fen=5_000)
    await produce(stack, topic, records(story))
    rng = random.Random(unique)
    kills_mid_stream = 0
    for _ in range(3):
        proc = run_ledger(ledger_db, stack, topic, rejected, RELIEF_LEDGER_BATCH_MAX_POSTINGS="20")
        await wait_for(ledger_db, min(len(story), await in_book(ledger_db) + 1))  # it consumes
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 30)
        kills_mid_stream += await in_book(ledger_db) < len(story)
    assert kills_mid_stream > 0, "no kill landed mid-stream"
    last = run_ledger(ledger_db, stack, topic, rejected)
    try:
        await wait_for(ledger_db, len(story))
    finally:
        last.send_signal(signal.SIGTERM)
        await asyncio.to_thread(last.wait, 30)
    await check_each_once(ledger_db, story, topic)


# ---------------------------------------------------------------- replay


async def test_replaying_the_topic_into_an_empty_database_gives_the_same_journal(
    stack: local_stack.StackInfo, unique: str, ledger_db: LedgerDb, consumers: Consumers
) -> None:
    topic, rejected = await make_topics(stack, unique)
    story = flood(300, towns=(SUOZHEN, QIFENG, TANGSHAN))
    await produce(stack, topic, records(story))
    consumers.start(ledger_db, stack, topic, rejected, 1_000)
    await wait_for(ledger_db, len(story))
    first = await postgres.verify(ledger_db.app_url, SEALER)
    assert first.ok

    async with ledger_database(stack) as replica:
        # other batch sizes, so partitions interleave differently
        again = consumers.start(replica, stack, topic, rejected, 37)
        await wait_for(replica, len(story))
        await consumers.stop(again)
        second = await postgres.verify(replica.app_url, SEALER)
        assert await journal(replica) == await journal(ledger_db)
        assert await alerts_of(replica) == await alerts_of(ledger_db)
        assert await postgres.balances(replica.pool) == await postgres.balances(ledger_db.pool)
    assert second.head_hash == first.head_hash
    assert second.chain_heads == first.chain_heads
    assert len(await alerts_of(ledger_db)) == 3  # each town's last, too-big grant


async def test_two_shards_store_every_posting_once_each_its_own_partitions(
    stack: local_stack.StackInfo, unique: str, ledger_db: LedgerDb
) -> None:
    """Towns live on one partition each and each town's chain is its own, so consumers
    that split the partitions (RELIEF_LEDGER_SHARD) never store the same posting."""
    topic, rejected = await make_topics(stack, unique)
    story = flood(300, towns=(SUOZHEN, QIFENG, TANGSHAN))
    await produce(stack, topic, records(story))
    first = run_ledger(ledger_db, stack, topic, rejected, RELIEF_LEDGER_SHARD="0/2")
    try:
        await asyncio.sleep(5)
        alone = await ledger_db.pool.fetch("SELECT DISTINCT source_partition FROM ledger_entries")
        assert alone, "shard 0/2 stored nothing"
        assert {r["source_partition"] % 2 for r in alone} == {0}, "shard 0/2 stored another's"
        second = run_ledger(ledger_db, stack, topic, rejected, RELIEF_LEDGER_SHARD="1/2")
        try:
            await wait_for(ledger_db, len(story))
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.to_thread(second.wait, 30)
    finally:
        first.send_signal(signal.SIGTERM)
        await asyncio.to_thread(first.wait, 30)
    await check_each_once(ledger_db, story, topic)
