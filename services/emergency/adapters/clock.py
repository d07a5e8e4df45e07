"""The clock: a tick into every intake partition, stamped by the broker.

Deadlines are judged when a tick passes them, on the broker's LogAppendTime, so a replay
of the intake topic reproduces every warning and breach (docs/design.md "time is an
event"). Faust timers live in process memory; this loop only *writes* ticks, so a clock
that was down for a while just means the next tick judges everything that fell due
meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from relief_platform.producer import acknowledged_producer
from schemas import topics
from schemas.envelope import CLOCK_TOWN, Actor, Role
from schemas.intake import ClockTick
from schemas.registry import encode

log = logging.getLogger("relief.clock")

CLOCK_KEY = b"__clock__"


def tick(partition: int, now: datetime) -> ClockTick:
    return ClockTick(
        event_id=uuid.uuid4(),
        occurred_at=now,
        town=CLOCK_TOWN,
        actor=Actor(role=Role.SYSTEM, org="relief-clock"),
        correlation_id=f"clock-p{partition}",
        partition=partition,
    )


async def send_ticks(
    producer: AIOKafkaProducer, partitions: int, topic: str = topics.INTAKE
) -> None:
    now = datetime.now(UTC)  # only informative: the broker's stamp is the tick's time
    sends = [
        await producer.send(topic, key=CLOCK_KEY, value=encode(tick(p, now)), partition=p)
        for p in range(partitions)
    ]
    await asyncio.gather(*sends)


async def run_clock(
    bootstrap: str,
    interval_s: float,
    topic: str = topics.INTAKE,
    stop: asyncio.Event | None = None,
) -> None:
    producer = acknowledged_producer(bootstrap)
    await producer.start()
    try:
        partitions = len(await producer.partitions_for(topic))
        log.info("clock: a tick into each of %d partitions every %.1f s", partitions, interval_s)
        while stop is None or not stop.is_set():
            await send_ticks(producer, partitions, topic)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for((stop or asyncio.Event()).wait(), interval_s)
    finally:
        await producer.stop()
