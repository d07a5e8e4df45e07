"""The intake API in process (httpx ASGITransport) with a real Kafka producer, writing to a
topic of its own per test (LogAppendTime, as the real intake topic); and a real server
with its whole read side: the casebook and the ledger, each a real server of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import cast

import asyncpg
import httpx
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from schemas.registry import IntakeRecord, decode
from services.casebook.adapters import postgres as casebook_postgres
from services.casebook.adapters.http import create_app as casebook_app
from services.casebook.settings import CasebookSettings
from services.intake.adapters.kafka import KafkaSink
from services.intake.adapters.reads import NoReadSource
from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from services.ledger.adapters import postgres as ledger_postgres
from services.ledger.adapters.metrics import LedgerMetrics
from services.ledger.web.app import build_app as ledger_app
from services.ledger.web.settings import DashboardSettings
from tests.integration.servers import free_port, serve_uvicorn
from tests.unit.intake.people import KEY_HEX, token_table

PARTITIONS = 3
SERVICE_TOKEN = "intake-reads-service-token"
SERVICE_HASH = hashlib.sha256(SERVICE_TOKEN.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Landed:
    record: IntakeRecord
    key: bytes
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes = b""  # the record as produced (decoding re-validates it)


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
                                m.value,
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


def _on(url: str, db: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + db


async def _admin(stack: local_stack.StackInfo, sql: str) -> None:
    conn = await asyncpg.connect(_on(stack.admin_url, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def read_database(stack: local_stack.StackInfo) -> Iterator[str]:
    """A fresh database with the ledger and the casebook migrated, each into its own
    tables (as on the local stack); the service role's URL."""
    name = f"intake_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(stack, f'CREATE DATABASE "{name}" OWNER "{local_stack.OWNER_ROLE}"'))
    try:
        owner = _on(stack.owner_url, name)
        asyncio.run(ledger_postgres.migrate(owner, local_stack.APP_ROLE))
        asyncio.run(casebook_postgres.migrate(owner, local_stack.APP_ROLE))
        yield _on(stack.app_url, name)
    finally:
        asyncio.run(_admin(stack, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def casebook_url(stack: local_stack.StackInfo, read_database: str) -> Iterator[str]:
    """The casebook's reads (`services.casebook serve`), a real server in a thread."""
    settings = CasebookSettings(database_url=read_database, casebook_token_hashes=SERVICE_HASH)
    url, srv, thread = serve_uvicorn(casebook_app(settings))
    try:
        yield url
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def ledger_url(stack: local_stack.StackInfo, read_database: str) -> Iterator[str]:
    """The ledger's HTTP side (`services.ledger serve`), a real server in a thread."""
    settings = DashboardSettings(
        database_url=read_database,
        dashboard_token_hashes=f"service:{SERVICE_HASH}",
        kafka_bootstrap="",
        dashboard_verify_interval_s=3600,
    )
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(ledger_app(settings, LedgerMetrics(CollectorRegistry())))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def read_settings(casebook_url: str, ledger_url: str) -> dict[str, str]:
    return {
        "casebook_url": casebook_url,
        "casebook_token": SERVICE_TOKEN,
        "ledger_url": ledger_url,
        "ledger_token": SERVICE_TOKEN,
    }


@pytest.fixture(scope="module")
def server(stack: local_stack.StackInfo, casebook_url: str, ledger_url: str) -> Iterator[str]:
    """A real uvicorn server in a thread (its own event loop, Kafka producer and reads
    from the casebook and the ledger, real servers too)."""
    topic = f"test.intake.fuzz.{uuid.uuid4().hex[:10]}"
    asyncio.run(
        ensure_topics(
            stack.kafka_bootstrap,
            PARTITIONS,
            1,
            names={topic: {"message.timestamp.type": "LogAppendTime"}},
        )
    )
    settings = settings_for(stack.kafka_bootstrap, topic, **read_settings(casebook_url, ledger_url))
    url, srv, thread = serve_uvicorn(create_app(settings, tokens=token_table()))
    try:
        yield url
    finally:
        srv.should_exit = True
        thread.join(10)
