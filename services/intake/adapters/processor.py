"""Reads the processor's progress from Kafka in the background, for /healthz and /metrics.

Every `interval_s` one reading: the intake topic's partitions, start and end offsets (a
group-less consumer) and the processor group's committed offsets (the admin client), each
call bounded by `timeout_s`. Requests only read the last judgement, so a health check
never waits on Kafka and a flood of them never reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from relief_platform import kafka_security
from services.intake.domain import health

log = logging.getLogger("relief.intake.health")
T = TypeVar("T")

PROCESSOR_LAG = Gauge(
    "relief_intake_processor_lag",
    "records on the intake topic the processor's group has not committed, as intake sees it",
)
PROCESSOR_PROGRESS_AGE = Gauge(
    "relief_intake_processor_progress_age_seconds",
    "seconds since the processor's committed offsets advanced or nothing waited",
)
PROCESSOR_CONSUMING = Gauge(
    "relief_intake_processor_consuming",
    "1 while the processor makes progress on the intake topic (intake's /healthz is ok)",
)
UNKNOWN = float("nan")  # before the first reading: never a reassuring 0


def _unknown() -> float:
    return UNKNOWN


for _gauge in (PROCESSOR_LAG, PROCESSOR_PROGRESS_AGE, PROCESSOR_CONSUMING):
    _gauge.set_function(_unknown)


class TopicMissing(RuntimeError):
    """The intake topic does not exist (yet)."""


class OffsetsReader:
    """One admin client and one group-less consumer, kept between readings and made
    afresh after a failure."""

    def __init__(self, bootstrap: str, topic: str, group: str, timeout_s: float) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.timeout_s = timeout_s
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            timeout_ms = int(self.timeout_s * 1000)
            admin = AIOKafkaAdminClient(
                **kafka_security.client_options(),
                bootstrap_servers=self.bootstrap,
                request_timeout_ms=timeout_ms,
                client_id="relief-intake-health",
            )
            consumer = AIOKafkaConsumer(
                **kafka_security.client_options(),
                bootstrap_servers=self.bootstrap,
                group_id=None,  # reads offsets only: never joins (or disturbs) any group
                enable_auto_commit=False,
                request_timeout_ms=timeout_ms,
                client_id="relief-intake-health",
            )
            try:
                await self._bounded(admin.start())
                await self._bounded(consumer.start())
            except BaseException:
                await _close(admin, consumer)
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def _bounded(self, awaitable: Awaitable[T]) -> T:
        return await asyncio.wait_for(awaitable, self.timeout_s)

    async def read(self) -> health.Offsets:
        try:
            return await self._read()
        except BaseException:
            await self.close()  # start afresh next time
            raise

    async def _read(self) -> health.Offsets:
        admin, consumer = await self._clients()
        described = await self._bounded(admin.describe_topics([self.topic]))
        partitions = sorted(
            p["partition"]
            for d in described
            if d.get("topic") == self.topic and d.get("error_code", 0) == 0
            for p in d.get("partitions", [])
        )
        if not partitions:
            raise TopicMissing(f"topic {self.topic} not found")
        tps = [TopicPartition(self.topic, p) for p in partitions]
        ends = await self._bounded(consumer.end_offsets(tps))
        starts = await self._bounded(consumer.beginning_offsets(tps))
        committed = await self._bounded(admin.list_consumer_group_offsets(self.group))
        return health.Offsets(
            ends={tp.partition: int(ends[tp]) for tp in tps},
            starts={tp.partition: int(starts[tp]) for tp in tps},
            committed={
                tp.partition: int(meta.offset)
                for tp, meta in committed.items()
                if tp.topic == self.topic and meta.offset >= 0
            },
        )

    async def close(self) -> None:
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        await _close(admin, consumer)


async def _close(admin: AIOKafkaAdminClient | None, consumer: AIOKafkaConsumer | None) -> None:
    for stop in (
        consumer.stop if consumer is not None else None,
        admin.close if admin is not None else None,
    ):
        if stop is None:
            continue
        try:
            await asyncio.wait_for(stop(), 5.0)
        except Exception:  # closing a broken client: nothing more to do
            log.debug("closing a Kafka client failed", exc_info=True)


class HealthMonitor:
    """Reads offsets every `interval_s` in a background task; `report()` judges the last
    reading. A reading that fails (Kafka away, timeout, no topic) makes the report
    degraded until one succeeds again."""

    def __init__(
        self,
        reader: OffsetsReader,
        limits: health.Limits,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.limits = limits
        self.interval_s = interval_s
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._progress: health.Progress | None = None
        self._reading: health.Offsets | None = None
        self._read_at_s: float | None = None
        self._error: str | None = None
        self._consuming = True  # as last logged

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="intake-health")
            self._task.add_done_callback(_log_death)
            # judged when scraped, so /metrics and /healthz always say the same
            PROCESSOR_LAG.set_function(lambda: _or_unknown(self.report().processor.lag))
            PROCESSOR_PROGRESS_AGE.set_function(
                lambda: _or_unknown(self.report().processor.seconds_since_progress)
            )
            PROCESSOR_CONSUMING.set_function(lambda: float(self.report().status == "ok"))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            for gauge in (PROCESSOR_LAG, PROCESSOR_PROGRESS_AGE, PROCESSOR_CONSUMING):
                gauge.set_function(_unknown)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.reader.close()

    async def _run(self) -> None:
        while True:
            await self.read_once()
            await asyncio.sleep(self.interval_s)

    async def read_once(self) -> None:
        try:
            # a bound on the whole reading too: its calls are bounded one by one
            reading = await asyncio.wait_for(self.reader.read(), 4 * self.reader.timeout_s)
        except (TimeoutError, KafkaError, OSError, TopicMissing) as exc:
            error = str(exc) if isinstance(exc, TopicMissing) else type(exc).__name__
            if self._error is None:  # logged when it starts failing, not every reading
                log.warning("cannot read the processor's offsets: %s", error)
            self._error = error
            return
        if self._error is not None:
            log.info("the processor's offsets can be read again")
        now_s = self.clock()
        self._progress = health.observe(self._progress, reading, now_s, self.limits)
        self._reading, self._read_at_s, self._error = reading, now_s, None
        verdict = health.judge(self._progress, reading, now_s, self.limits)
        if verdict.consuming != self._consuming:
            if verdict.consuming:
                log.info("the processor consumes again (lag %d)", verdict.lag)
            else:
                log.warning("the processor is not consuming: %s", verdict.reason)
            self._consuming = verdict.consuming

    def report(self) -> health.HealthView:
        now_s = self.clock()
        error = self._error
        if self._task is not None and self._task.done() and not self._task.cancelled():
            error = f"health monitor stopped: {self._task.exception()!r}"
        elif error is None and self._reading is None:
            error = "no reading yet"
        kafka = health.KafkaView(
            reachable=error is None,
            seconds_since_reading=(
                None if self._read_at_s is None else round(now_s - self._read_at_s, 1)
            ),
            error=error,
        )
        processor = health.ProcessorView(
            group=self.reader.group,
            topic=self.reader.topic,
            lag=None,
            lag_by_partition={},
            committed_advancing=False,
            seconds_since_progress=None,
            has_committed_offsets=False,
            max_lag=self.limits.max_lag,
            stall_after_s=self.limits.stall_s,
            reason="no reading of the offsets yet",
        )
        consuming = False
        if self._progress is not None and self._reading is not None:
            verdict = health.judge(self._progress, self._reading, now_s, self.limits)
            consuming = verdict.consuming
            processor = processor.model_copy(
                update={
                    "lag": verdict.lag,
                    "lag_by_partition": verdict.lag_by_partition,
                    "committed_advancing": verdict.committed_advancing,
                    "seconds_since_progress": verdict.seconds_since_progress,
                    "has_committed_offsets": verdict.has_committed_offsets,
                    "reason": verdict.reason,
                }
            )
        ok = consuming and kafka.reachable
        return health.HealthView(
            status="ok" if ok else "degraded", processor=processor, kafka=kafka
        )


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # a bug, not Kafka being away: /healthz says degraded from now on
        log.error("the health monitor stopped", exc_info=task.exception())


def _or_unknown(value: float | None) -> float:
    return UNKNOWN if value is None else float(value)
