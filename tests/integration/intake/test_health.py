"""/healthz against the real Kafka: a processor group that stops committing while records
wait on its intake topic is reported degraded (503) with its lag; once the group commits
up to the end, intake is ok again. The group here is the test's own, committed by hand."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI

from deploy.local import stack as local_stack
from services.intake.adapters.reads import NoReadSource
from services.intake.app import create_app
from tests.integration.intake.conftest import PARTITIONS, Topic, settings_for
from tests.unit.intake.people import token_table

pytestmark = pytest.mark.integration

WAIT_S = 60.0  # a bound on every wait, never a claim about speed
# small windows, so a stall shows within the test: read every 0.2 s, stalled after 1 s
FAST = {"intake_health_interval_s": 0.2, "intake_health_stall_s": 1.0}


async def _produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for partition, count in per_partition.items():
            for n in range(count):
                await producer.send_and_wait(topic, f"r{n}".encode(), partition=partition)
    finally:
        await producer.stop()


async def _commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """What a processor does after it has decided records: commit the next offset to read."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): offset for p, offset in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


@pytest.fixture
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (the background reading runs), over ASGI."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as c,
    ):
        yield c


async def _health_until(
    client: httpx.AsyncClient,
    what: str,
    want: dict[str, Any],
    also: Callable[[dict[str, Any]], bool] = lambda _: True,
) -> tuple[int, dict[str, Any]]:
    """Polls /healthz until its answer has every `want` item (processor.* and kafka.* for
    nested ones) and `also` holds."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    last: tuple[int, dict[str, Any]] = (0, {})
    while asyncio.get_running_loop().time() < deadline:
        answer = await client.get("/healthz")
        body = answer.json()
        last = (answer.status_code, body)
        flat = {"status_code": answer.status_code, **body}
        flat |= {f"processor.{k}": v for k, v in body["processor"].items()}
        flat |= {f"kafka.{k}": v for k, v in body["kafka"].items()}
        if all(flat.get(k) == v for k, v in want.items()) and also(body):
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {WAIT_S:g} s: {what}; last answer {last}")


class TestAStalledProcessor:
    @pytest.fixture
    def group(self, unique: str) -> str:
        return f"test-processor-{unique}"

    @pytest.fixture
    def app(self, stack: local_stack.StackInfo, topic: Topic, group: str) -> FastAPI:
        settings = settings_for(stack.kafka_bootstrap, topic.name, emergency_app_id=group, **FAST)
        return create_app(settings, reads=NoReadSource(), tokens=token_table())

    async def test_is_degraded_with_its_lag_and_ok_once_it_commits_to_the_end(
        self, stack: local_stack.StackInfo, topic: Topic, group: str, running: httpx.AsyncClient
    ) -> None:
        assert PARTITIONS == 3
        await _produce(stack.kafka_bootstrap, topic.name, {0: 4, 1: 2})

        # records wait and the group has never committed
        _, body = await _health_until(
            running,
            "degraded: no committed offsets",
            {"status_code": 503, "processor.lag": 6, "processor.has_committed_offsets": False},
        )
        assert body["status"] == "degraded"
        assert body["kafka"]["reachable"] is True
        assert "no committed offsets" in body["processor"]["reason"]

        # the group commits part of the way, then stops: 3 records still wait in partition 0
        await _commit(stack.kafka_bootstrap, group, topic.name, {0: 1, 1: 2, 2: 0})
        _, body = await _health_until(
            running,
            "degraded with the lag behind the commits",
            {"status_code": 503, "processor.lag": 3, "processor.has_committed_offsets": True},
        )
        processor = body["processor"]
        assert body["status"] == "degraded"
        assert processor["lag_by_partition"] == {"0": 3, "1": 0, "2": 0}
        assert processor["committed_advancing"] is False
        assert processor["seconds_since_progress"] >= FAST["intake_health_stall_s"]
        assert processor["group"] == group and processor["topic"] == topic.name
        metrics = (await running.get("/metrics/")).text
        assert "relief_intake_processor_lag 3.0" in metrics
        assert "relief_intake_processor_consuming 0.0" in metrics

        # it catches up: everything committed
        await _commit(stack.kafka_bootstrap, group, topic.name, {0: 4})
        _, body = await _health_until(
            running,
            "ok once the group commits to the end",
            {"status_code": 200, "processor.lag": 0},
        )
        assert body["status"] == "ok"
        assert body["processor"]["reason"] is None
        assert body["processor"]["committed_advancing"] is True
        metrics = (await running.get("/metrics/")).text
        assert "relief_intake_processor_lag 0.0" in metrics
        assert "relief_intake_processor_consuming 1.0" in metrics

        # and the liveness answer never depended on any of it
        assert (await running.get("/livez")).json() == {"status": "ok"}


class TestNoKafka:
    @pytest.fixture
    def app(self, unique: str) -> FastAPI:
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        settings = settings_for(
            f"127.0.0.1:{port}",
            f"test.intake.{unique}",
            intake_health_timeout_s=1.0,
            intake_produce_timeout_s=1.0,
            **FAST,
        )
        return create_app(settings, reads=NoReadSource(), tokens=token_table())

    async def test_unreadable_offsets_are_degraded(self, running: httpx.AsyncClient) -> None:
        _, body = await _health_until(
            running,
            "degraded: a reading of Kafka failed",
            {"status_code": 503, "kafka.reachable": False},
            also=lambda b: b["kafka"]["error"] not in (None, "no reading yet"),
        )
        assert body["status"] == "degraded"
        assert body["processor"]["lag"] is None
        assert (await running.get("/livez")).status_code == 200
