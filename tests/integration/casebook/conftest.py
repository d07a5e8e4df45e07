"""The casebook against the real Kafka and PostgreSQL of the `stack`: a migrated database
of its own, topics of its own, and the real rules standing in for the Faust worker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import BaseModel

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from schemas.envelope import Record
from schemas.intake import ClockTick
from schemas.policy import load_config
from schemas.registry import decode, encode
from schemas.topics import RejectedRecord
from services.casebook.adapters import postgres
from services.casebook.adapters.http import create_app
from services.casebook.app import run
from services.casebook.settings import CasebookSettings
from services.emergency.domain.book import Book
from services.emergency.domain.decide import Rules, decide
from tests.integration.ledger.conftest import ensure_read_role

PARTITIONS = 3
TOKEN = "casebook-test-token"
CONFIG = load_config()
RULES = Rules(policy=CONFIG.policy, county=CONFIG.county)
WAIT_S = 60.0


def _on(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


@dataclasses.dataclass(frozen=True)
class Topics:
    intake: str
    decisions: str
    rejected: str
    group: str  # the stand-in processor's consumer group on the intake topic


@dataclasses.dataclass(frozen=True)
class CasebookDb:
    admin_url: str
    owner_url: str
    app_url: str


@contextlib.asynccontextmanager
async def casebook_database(stack: local_stack.StackInfo) -> AsyncIterator[CasebookDb]:
    """An empty database owned by relief_owner with the casebook migrated; dropped after."""
    name = f"casebook_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_on(stack.admin_url, "postgres"))
    try:
        await ensure_read_role(admin)
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{local_stack.OWNER_ROLE}"')
    finally:
        await admin.close()
    db = CasebookDb(
        _on(stack.admin_url, name), _on(stack.owner_url, name), _on(stack.app_url, name)
    )
    await postgres.migrate(db.owner_url, local_stack.APP_ROLE, local_stack.READ_ROLE)
    try:
        yield db
    finally:
        admin = await asyncpg.connect(_on(stack.admin_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def casebook_db(stack: local_stack.StackInfo) -> AsyncIterator[CasebookDb]:
    async with casebook_database(stack) as db:
        yield db


@pytest.fixture
async def topics(stack: local_stack.StackInfo, unique: str) -> Topics:
    t = Topics(
        intake=f"test.cb.intake.{unique}",
        decisions=f"test.cb.decisions.{unique}",
        rejected=f"test.cb.rejected.{unique}",
        group=f"test-cb-emergency-{unique}",
    )
    await ensure_topics(
        stack.kafka_bootstrap,
        PARTITIONS,
        1,
        names={
            t.intake: {"message.timestamp.type": "LogAppendTime"},
            t.decisions: {},
            t.rejected: {},
        },
    )
    return t


def settings_for(
    stack: local_stack.StackInfo, db: CasebookDb, t: Topics, **more: Any
) -> CasebookSettings:
    return CasebookSettings(
        kafka_bootstrap=stack.kafka_bootstrap,
        database_url=db.app_url,
        database_owner_url=db.owner_url,
        intake_topic=t.intake,
        decisions_topic=t.decisions,
        rejected_topic=t.rejected,
        emergency_app_id=t.group,
        casebook_metrics_port=0,
        casebook_progress_interval_s=0.2,
        casebook_poll_timeout_ms=50,
        casebook_token_hashes=hashlib.sha256(TOKEN.encode()).hexdigest(),
        **more,
    )


@contextlib.asynccontextmanager
async def running(settings: CasebookSettings) -> AsyncIterator[asyncio.Task[Any]]:
    """`services.casebook run` in this event loop, stopped (and awaited) afterwards."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def reader(settings: CasebookSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The casebook's HTTP reads in process, with the service token."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://casebook",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as client,
    ):
        yield client


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (bounded) until `check` holds."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"not within {WAIT_S} s: {what}"
        await asyncio.sleep(0.1)


async def produce(
    bootstrap: str,
    topic: str,
    values: Sequence[tuple[str, bytes]],
    timestamp_ms: int | None = None,
) -> list[tuple[int, int]]:
    """(key, value) pairs onto `topic` (stamped `timestamp_ms` where the topic keeps the
    producer's time; the broker's now by default); their (partition, offset)s."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, key=k.encode(), value=v, timestamp_ms=timestamp_ms)
            for k, v in values
        ]
        metas = await asyncio.gather(*sent)
        return [(m.partition, m.offset) for m in metas]
    finally:
        await producer.stop()


class Processor:
    """The real rules (services.emergency.domain.decide) over a test's intake topic, with
    their decisions and dead letters produced on the test's own topics, and the intake
    offsets committed under the test's group once the outputs are acknowledged: what the
    Faust worker does, without Faust."""

    def __init__(self, bootstrap: str, t: Topics) -> None:
        self.bootstrap = bootstrap
        self.t = t
        self.store: dict[str, Any] = {}
        self.next: dict[int, int] = {}
        self.outputs: list[BaseModel] = []

    def _decide(self, record: Record, partition: int, offset: int, raw: bytes) -> list[Any]:
        if isinstance(record, ClockTick):
            towns = sorted({k.split("/")[1] for k in self.store if k.startswith("t/")})
        else:
            towns = [record.town]
        out: list[Any] = []
        for town in towns:
            book = Book(town, self.store.get)
            verdict = decide(book, record, RULES)
            for key, value in book.changes():
                if value is None:
                    self.store.pop(key, None)
                else:
                    self.store[key] = value
            out.extend(verdict.records)
            if verdict.refused is not None:
                out.append(
                    RejectedRecord.of(
                        self.t.intake, partition, offset, verdict.refused, raw, datetime.now(UTC)
                    )
                )
        return out

    async def step(self, commit: bool = True) -> list[BaseModel]:
        """Decide everything new on the intake topic; returns what was sent."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.t.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            parts = [TopicPartition(self.t.intake, p) for p in range(PARTITIONS)]
            consumer.assign(parts)
            ends = await consumer.end_offsets(parts)
            for tp in parts:
                consumer.seek(tp, self.next.get(tp.partition, 0))
            sent: list[BaseModel] = []
            values: list[tuple[str, str, bytes]] = []
            while any(self.next.get(tp.partition, 0) < ends[tp] for tp in parts):
                batch = await consumer.getmany(timeout_ms=500)
                for tp, messages in sorted(batch.items(), key=lambda kv: kv[0].partition):
                    for m in messages:
                        assert m.value is not None
                        stamp = datetime.fromtimestamp(m.timestamp / 1000, UTC)
                        record = decode(m.value, recorded_at=stamp)
                        assert isinstance(record, Record)
                        for out in self._decide(record, tp.partition, m.offset, m.value):
                            sent.append(out)
                            if isinstance(out, RejectedRecord):
                                values.append((self.t.rejected, self.t.intake, encode(out)))
                            elif isinstance(out, Record) and out.type != "Posting":
                                values.append((self.t.decisions, out.town, encode(out)))
                        self.next[tp.partition] = m.offset + 1
            for topic in (self.t.decisions, self.t.rejected):
                chosen = [(k, v) for t, k, v in values if t == topic]
                if chosen:
                    await produce(self.bootstrap, topic, chosen)
            if commit and self.next:
                await consumer.commit(
                    {TopicPartition(self.t.intake, p): o for p, o in self.next.items()}
                )
            self.outputs.extend(sent)
            return sent
        finally:
            await consumer.stop()


async def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every casebook table that a replay must give again, in a fixed order."""
    conn = await asyncpg.connect(url)
    try:
        out = {}
        for table, order in (
            ("decisions", "event_id"),
            ("cases", "town, case_id"),
            ("deadlines", "town, case_id, kind"),
            ("submissions", "event_id"),
            ("rejections", "rejected_id"),
            ("publications", "event_id"),
            ("hardship_lists", "event_id"),
            ("hardship_rows", "list_event_id, row_index"),
            ("hardship_follow_ups", "event_id"),
            ("positions", "topic, partition"),
        ):
            out[table] = [
                tuple(r)
                for r in await conn.fetch(f"SELECT * FROM casebook.{table} ORDER BY {order}")
            ]
        return out
    finally:
        await conn.close()
