"""The Kafka producer of relief.intake.v1: idempotent, acks from all in-sync replicas,
and a bounded wait for the acknowledgement (STYLE "pass library options explicitly").

`send` returns only once Kafka has acknowledged the record, with the broker's
LogAppendTime stamp (the record's `recorded_at`); anything else is `ProduceUnavailable`
and the API answers 503 with Retry-After, never a 2xx.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from relief_platform.positioned import broker_time
from relief_platform.producer import acknowledged_producer

log = logging.getLogger("relief.intake.kafka")

# The broker's message.max.bytes default; our records are kept below it (hardship chunks).
MAX_REQUEST_BYTES = 1_048_576


class ProduceUnavailable(RuntimeError):
    """Kafka did not acknowledge within the bounded wait (down, or no leader)."""


@dataclass(frozen=True)
class Ack:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None  # LogAppendTime on the intake topic

    @property
    def recorded_at(self) -> datetime | None:
        return broker_time(self.timestamp_ms)


class RecordSink(Protocol):
    """Where intake's records go; the real one is `KafkaSink`."""

    topic: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, key: bytes, value: bytes, topic: str | None = None) -> Ack: ...

    async def send_many(self, items: Sequence[tuple[bytes, bytes, str | None]]) -> Acks: ...


# What `send_many` hands back once every record is queued: awaiting it gives each
# record's acknowledgement, or ProduceUnavailable for one Kafka did not acknowledge.
Acks = Coroutine[Any, Any, list["Ack | ProduceUnavailable"]]


class KafkaSink:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        timeout_s: float = 10.0,
        request_timeout_ms: int = 10_000,
        linger_ms: int = 2,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout_s = timeout_s
        self.request_timeout_ms = request_timeout_ms
        self.linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    def _new_producer(self) -> AIOKafkaProducer:
        # acks=all + idempotence (relief_platform.producer): an acknowledged record is on
        # every in-sync replica, and the producer's own retries never write it twice
        return acknowledged_producer(
            self.bootstrap,
            linger_ms=self.linger_ms,
            request_timeout_ms=self.request_timeout_ms,
            max_request_size=MAX_REQUEST_BYTES,
            retry_backoff_ms=100,
            client_id="relief-intake",
        )

    async def start(self) -> None:
        """Connect now if Kafka answers; otherwise the first send tries again (the API
        starts and answers 503 while Kafka is away, rather than not starting at all)."""
        try:
            await self._ensure_started()
        except ProduceUnavailable as exc:
            log.warning("Kafka not reachable at start: %s", exc)

    async def _ensure_started(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is not None:
                return self._producer
            producer = self._new_producer()
            try:
                await asyncio.wait_for(producer.start(), self.timeout_s)
            except (TimeoutError, KafkaError, OSError) as exc:
                await _quietly_stop(producer)
                raise ProduceUnavailable(f"cannot connect to Kafka: {type(exc).__name__}") from exc
            self._producer = producer
            return producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _quietly_stop(producer)

    async def send(self, key: bytes, value: bytes, topic: str | None = None) -> Ack:
        """Produce one record to the intake topic, or to `topic` (the claims topic)."""
        producer = await self._ensure_started()
        try:
            meta = await asyncio.wait_for(
                producer.send_and_wait(topic or self.topic, value=value, key=key), self.timeout_s
            )
        except TimeoutError as exc:
            # The record may still reach Kafka later: the caller retries with the same
            # Idempotency-Key, the same event_id, and the processor keeps it once.
            raise ProduceUnavailable(f"no acknowledgement within {self.timeout_s:g} s") from exc
        except KafkaError as exc:
            raise ProduceUnavailable(f"Kafka refused the record: {type(exc).__name__}") from exc
        return Ack(meta.topic, meta.partition, meta.offset, meta.timestamp)

    async def send_many(self, items: Sequence[tuple[bytes, bytes, str | None]]) -> Acks:
        """Queue every (key, value, topic or None for the intake topic) with the producer in
        the given order (records of one
        town keep their order on its partition), returning once all are queued; the
        result, awaited, is each record's acknowledgement — many records share one round
        trip to the brokers instead of paying one each (issue 14, bulk intake). The
        whole batch is bounded by the produce timeout, queueing included."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        futures: list[asyncio.Future[Any] | ProduceUnavailable] = []
        try:
            producer = await self._ensure_started()
        except ProduceUnavailable as exc:
            return _settled([exc] * len(items))
        for key, value, topic in items:
            remaining_s = deadline - loop.time()
            try:
                if remaining_s <= 0:
                    raise TimeoutError
                futures.append(
                    await asyncio.wait_for(
                        producer.send(topic or self.topic, value=value, key=key), remaining_s
                    )
                )
            except TimeoutError:
                futures.append(ProduceUnavailable(f"not queued within {self.timeout_s:g} s"))
            except KafkaError as exc:
                futures.append(
                    ProduceUnavailable(f"Kafka refused the record: {type(exc).__name__}")
                )
        return self._acks(futures, deadline)

    async def _acks(
        self, futures: list[asyncio.Future[Any] | ProduceUnavailable], deadline: float
    ) -> list[Ack | ProduceUnavailable]:
        waiting = [f for f in futures if isinstance(f, asyncio.Future)]
        if waiting:
            remaining_s = max(deadline - asyncio.get_running_loop().time(), 0.001)
            await asyncio.wait(waiting, timeout=remaining_s)
        out: list[Ack | ProduceUnavailable] = []
        for f in futures:
            if isinstance(f, ProduceUnavailable):
                out.append(f)
            elif not f.done():
                # the record may still land: the caller re-sends with the same key and
                # event id, which the processor applies once
                f.add_done_callback(_consume_outcome)
                out.append(ProduceUnavailable(f"no acknowledgement within {self.timeout_s:g} s"))
            elif f.cancelled() or f.exception() is not None:
                name = "cancelled" if f.cancelled() else type(f.exception()).__name__
                out.append(ProduceUnavailable(f"Kafka refused the record: {name}"))
            else:
                meta = f.result()
                out.append(Ack(meta.topic, meta.partition, meta.offset, meta.timestamp))
        return out


async def _settled(
    outcomes: list[Ack | ProduceUnavailable],
) -> list[Ack | ProduceUnavailable]:
    return outcomes


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    # a late failure nobody awaits any more would be logged as never retrieved
    if not future.cancelled():
        future.exception()


async def _quietly_stop(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), 5.0)
    except Exception:  # a producer that never connected may fail to stop; nothing to keep
        log.debug("producer stop failed", exc_info=True)
