"""The intake API in process (httpx ASGITransport) with a real Kafka producer, writing to a
topic of its own per test (LogAppendTime, as the real intake topic)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import cast

import asyncpg
import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition

from deploy.local import stack as local_stack
from deploy.local.topics import ensure_topics
from schemas.registry import IntakeRecord, decode
from services.intake.adapters.kafka import KafkaSink
from services.intake.adapters.reads import NoReadSource
from services.intake.api import create_app
from services.intake.settings import IntakeSettings
from services.ledger.adapters import postgres as ledger_postgres
from tests.unit.intake.people import KEY_HEX, token_table

PARTITIONS = 3


@dataclasses.dataclass(frozen=True)
class Landed:
    record: IntakeRecord
    key: bytes
    partition: int
    offset: int
    timestamp_ms: int


class Topic:
    def __init__(self, bootstrap: str, name: str) -> None:
        self.bootstrap = bootstrap
        self.name = name

    async def end_offsets(self) -> int:
        """The sum of the topic's end offsets: unchanged means nothing was produced."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        try:
            parts = [TopicPartition(self.name, p) for p in range(PARTITIONS)]
            ends = await consumer.end_offsets(parts)
            return sum(ends.values())
        finally:
            await consumer.stop()

    async def records(self) -> list[Landed]:
        """Everything on the topic, decoded (recorded_at = the broker's stamp)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            parts = [TopicPartition(self.name, p) for p in range(PARTITIONS)]
            consumer.assign(parts)
            ends = await consumer.end_offsets(parts)
            await consumer.seek_to_beginning(*parts)
            out: list[Landed] = []
            while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=1_000)
                for tp, messages in batch.items():
                    for m in messages:
                        assert m.value is not None and m.key is not None
                        stamp = datetime.fromtimestamp(m.timestamp / 1000, tz=UTC)
                        record = cast(IntakeRecord, decode(m.value, recorded_at=stamp))
                        out.append(
                            Landed(
                                record,
                                m.key,
                                tp.partition,
                                m.offset,
                                m.timestamp,
                            )
                        )
            return out
        finally:
            await consumer.stop()


@pytest.fixture
async def topic(stack: local_stack.StackInfo, unique: str) -> Topic:
    name = f"test.intake.{unique}"
    await ensure_topics(
        stack.kafka_bootstrap,
        PARTITIONS,
        1,
        names={name: {"message.timestamp.type": "LogAppendTime"}},
    )
    return Topic(stack.kafka_bootstrap, name)


def settings_for(bootstrap: str, topic: str, **extra: object) -> IntakeSettings:
    return IntakeSettings(
        kafka_bootstrap=bootstrap,
        intake_topic=topic,
        id_hash_key=KEY_HEX,
        intake_tokens_file=None,
        database_url="",
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def client(stack: local_stack.StackInfo, topic: Topic) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(stack.kafka_bootstrap, topic.name)
    sink = KafkaSink(stack.kafka_bootstrap, topic.name, timeout_s=15)
    app = create_app(settings, sink=sink, reads=NoReadSource(), tokens=token_table())
    await sink.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake"
        ) as c:
            yield c
    finally:
        await sink.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ledger_url(stack: local_stack.StackInfo) -> Iterator[str]:
    """A freshly migrated, empty ledger database; its service-role URL."""
    name = f"intake_{uuid.uuid4().hex[:10]}"

    def on(url: str, db: str) -> str:
        return url.rsplit("/", 1)[0] + "/" + db

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(on(stack.admin_url, "postgres"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}" OWNER "{local_stack.OWNER_ROLE}"'))
    try:
        asyncio.run(ledger_postgres.migrate(on(stack.owner_url, name), local_stack.APP_ROLE))
        yield on(stack.app_url, name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def server(stack: local_stack.StackInfo, ledger_url: str) -> Iterator[str]:
    """A real uvicorn server in a thread (its own event loop, Kafka producer and reads)."""
    topic = f"test.intake.fuzz.{uuid.uuid4().hex[:10]}"
    asyncio.run(
        ensure_topics(
            stack.kafka_bootstrap,
            PARTITIONS,
            1,
            names={topic: {"message.timestamp.type": "LogAppendTime"}},
        )
    )
    settings = settings_for(stack.kafka_bootstrap, topic).model_copy(
        update={"database_url": ledger_url}
    )
    app = create_app(settings, tokens=token_table())
    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)
