"""The local platform is real: a Kafka broker and a PostgreSQL server that behave as such."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics

pytestmark = pytest.mark.integration

RECORDS = 10_000
KEYS = 37
PARTITIONS = 4


async def _drain(
    consumer: AIOKafkaConsumer, want: int, timeout_s: float
) -> list[tuple[bytes, bytes]]:
    got: list[tuple[bytes, bytes]] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(got) < want and asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(timeout_ms=500, max_records=5_000)
        for records in batch.values():
            got.extend((r.key or b"", r.value or b"") for r in records)
    return got


async def test_idempotent_producer_round_trips_10000_records_in_order_per_key(
    stack: local_stack.StackInfo, unique: str
) -> None:
    topic = f"test.platform.roundtrip.{unique}"
    await ensure_topics(stack.kafka_bootstrap, partitions=PARTITIONS, names={topic: {}})
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        sends = [
            await producer.send(topic, key=f"k{i % KEYS}".encode(), value=str(i).encode())
            for i in range(RECORDS)
        ]
        metadata = await asyncio.gather(*sends)
    finally:
        await producer.stop()
    assert len({m.partition for m in metadata}) == PARTITIONS, (
        "keys should spread over every partition"
    )

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=f"test-{unique}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = await _drain(consumer, RECORDS, timeout_s=60)
    finally:
        await consumer.stop()

    assert len(got) == RECORDS
    assert sorted(int(v) for _, v in got) == list(range(RECORDS)), "a record was lost or duplicated"
    per_key: dict[bytes, list[int]] = defaultdict(list)
    for key, value in got:
        per_key[key].append(int(value))
    for key, values in per_key.items():
        assert values == sorted(values), f"records of key {key!r} arrived out of order"


async def test_aborted_transaction_is_invisible_to_read_committed(
    stack: local_stack.StackInfo, unique: str
) -> None:
    topic = f"test.platform.txn.{unique}"
    await ensure_topics(stack.kafka_bootstrap, partitions=1, names={topic: {}})
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, transactional_id=f"test-txn-{unique}", acks="all"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-1")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-2")
    finally:
        await producer.stop()

    async def read(isolation: str) -> list[bytes]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.kafka_bootstrap,
            isolation_level=isolation,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            values: list[bytes] = []
            deadline = asyncio.get_running_loop().time() + 30
            while (
                await consumer.position(tp) < end and asyncio.get_running_loop().time() < deadline
            ):
                batch = await consumer.getmany(tp, timeout_ms=500)
                values.extend(r.value or b"" for r in batch.get(tp, []))
            return values
        finally:
            await consumer.stop()

    assert await read("read_committed") == [b"committed-1", b"committed-2"]
    assert b"aborted" in await read("read_uncommitted"), "the aborted record was never written"


async def test_postgres_round_trip_and_rollback_leaves_nothing(fresh_database: str) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, amount_fen bigint NOT NULL)")
        await conn.execute("INSERT INTO t VALUES (1, 5000000)")
        assert await conn.fetchval("SELECT amount_fen FROM t WHERE id = 1") == 5_000_000

        with pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():
                await conn.execute("INSERT INTO t VALUES (2, 100)")
                await conn.execute("INSERT INTO t VALUES (1, 100)")  # breaks the key: all undone
        assert [r["id"] for r in await conn.fetch("SELECT id FROM t ORDER BY id")] == [1]

        async with conn.transaction():
            await conn.execute("INSERT INTO t VALUES (3, 100)")
        # an explicit rollback of a started transaction also leaves nothing
        tr = conn.transaction()
        await tr.start()
        await conn.execute("INSERT INTO t VALUES (4, 100)")
        await tr.rollback()
        assert [r["id"] for r in await conn.fetch("SELECT id FROM t ORDER BY id")] == [1, 3]
    finally:
        await conn.close()


async def test_service_roles_exist_and_the_app_role_is_not_a_superuser(
    stack: local_stack.StackInfo,
) -> None:
    conn = await asyncpg.connect(stack.app_url)
    try:
        assert await conn.fetchval("SELECT current_user") == local_stack.APP_ROLE
        assert (
            await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            is False
        )
    finally:
        await conn.close()


async def test_intake_topic_is_stamped_by_the_broker(
    stack: local_stack.StackInfo, unique: str
) -> None:
    """docs/design.md "one clock": a record's time on the intake topic is the broker's append time,
    whatever time the producer claims."""
    from relief_platform.topics import TOPIC_CONFIGS
    from schemas import topics

    topic = f"test.platform.stamp.{unique}"
    await ensure_topics(
        stack.kafka_bootstrap, partitions=1, names={topic: TOPIC_CONFIGS[topics.INTAKE]}
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        claimed_ms = 1_000_000_000_000  # a producer whose clock says 2001
        meta = await producer.send_and_wait(topic, b"tick", timestamp_ms=claimed_ms)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert record.timestamp_type == 1  # LogAppendTime
    assert record.timestamp != claimed_ms and record.timestamp == meta.timestamp
