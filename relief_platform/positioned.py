"""A consumer whose positions live with what it writes, for the services that fold Kafka
topics into PostgreSQL (the ledger, the casebook).

Exactly once by construction (docs/design.md "exactly once"): there is no consumer group
and Kafka keeps no offsets for it. Each batch's output is committed with the next offset
of every partition it read, in one PostgreSQL transaction; at start the consumer seeks to
the stored positions. A crash before the commit reads the batch again; after it, never.

A record that does not read is sent to a dead-letter topic, and the letter is acknowledged
by Kafka (acks=all, idempotent) before the batch's positions pass it: a crash re-sends the
letter (stamped with the record's own broker time, so the re-sent letter is the same
bytes), a refusal stops the consumer before its position moves. Nothing is stepped over.

Sharding: `shard=(k, n)` reads only the partitions p with p % n == k of every topic. A
town's records live on one partition of each topic, so shards never write the same rows.

Imports only `schemas` (and the platform): services build on it, never on each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from relief_platform import kafka_security
from relief_platform.producer import acknowledged_producer
from schemas.registry import encode
from schemas.topics import RejectedRecord

log = logging.getLogger("relief.platform.positioned")

Position = tuple[str, int]  # (topic, partition)
Record: TypeAlias = "ConsumerRecord[bytes, bytes]"

TOPIC_WAIT_S = 1.0
TOPIC_WAIT_MAX_S = 300.0


def broker_time(timestamp_ms: int | None) -> datetime | None:
    """The broker's stamp of a record (its log-append or create time) as a datetime: the
    one clock every stage reads (docs/design.md "one clock for every deadline"). None when
    the record has none (Kafka's -1)."""
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


def stamp_of(record: Record) -> datetime:
    """The broker's stamp of a consumed record (log-append time on the service's topics)."""
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


# "k/n" as a setting: this consumer takes the partitions p with p % n == k; empty: all
SHARD_PATTERN = r"^([0-9]{1,3}/[1-9][0-9]{0,2})?$"


def shard_of(text: str) -> tuple[int, int] | None:
    """ "k/n" as (k, n); None (empty) for every partition. A shard outside its count, or
    text not of that form, is refused with what was wrong."""
    if not text:
        return None
    k_text, sep, n_text = text.partition("/")
    if not (sep and k_text.isdigit() and n_text.isdigit()):
        raise ValueError(f"shard {text!r}: expected k/n, e.g. 0/2")
    k, n = int(k_text), int(n_text)
    if not 0 <= k < n:
        raise ValueError(f"shard {text!r}: with {n} shards, k is 0 to {n - 1}")
    return k, n


def in_shard(
    partitions: Sequence[TopicPartition], shard: tuple[int, int] | None
) -> list[TopicPartition]:
    """The partitions of `shard` (k, n): those p with p % n == k; all when None."""
    if shard is None:
        return list(partitions)
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"shard {k} of {n}: a shard is 0 to {n - 1}")
    return [tp for tp in partitions if tp.partition % n == k]


async def topic_partitions(
    bootstrap: str, names: Sequence[str], stop: asyncio.Event
) -> list[TopicPartition] | None:
    """Every partition of `names`, waiting (bounded) for each topic to exist; None when
    stopped first."""
    admin = AIOKafkaAdminClient(**kafka_security.client_options(), bootstrap_servers=bootstrap)
    await admin.start()
    try:
        waited = 0.0
        while not stop.is_set():
            described = await admin.describe_topics(list(names))
            found = {
                d["topic"]: sorted(p["partition"] for p in d.get("partitions", []))
                for d in described
                if d.get("error_code", 0) == 0 and d.get("partitions")
            }
            missing = [n for n in names if n not in found]
            if not missing:
                return [TopicPartition(n, p) for n in names for p in found[n]]
            if waited >= TOPIC_WAIT_MAX_S:
                raise RuntimeError(f"topics {missing} do not exist after {waited:.0f} s")
            await asyncio.sleep(TOPIC_WAIT_S)
            waited += TOPIC_WAIT_S
        return None
    finally:
        await admin.close()


def _same_partitions(found: Sequence[TopicPartition]) -> None:
    """Sharded over several topics, a town's records must fall in one shard on each: the
    same key lands on the same partition number only when the topics have as many."""
    counts: dict[str, int] = {}
    for tp in found:
        counts[tp.topic] = counts.get(tp.topic, 0) + 1
    if len(set(counts.values())) > 1:
        raise RuntimeError(
            f"sharded consumers need topics of one partition count, found {counts}: "
            "a town would fall in different shards on different topics"
        )


class DeadLetters:
    """A batch's records that do not read, on their way to the dead-letter topic."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._sent: list[asyncio.Future[Any]] = []

    async def send(self, record: Record, reason: str) -> None:
        log.warning("rejected %s/%d@%d: %s", record.topic, record.partition, record.offset, reason)
        letter = RejectedRecord.of(
            record.topic,
            record.partition,
            record.offset,
            reason,
            record.value,
            stamp_of(record),
        )
        self._sent.append(
            await self._producer.send(self._topic, key=record.key, value=encode(letter))
        )

    async def acknowledged(self) -> int:
        """Wait until Kafka has every letter (raises if it refuses one); how many."""
        sent, self._sent = self._sent, []
        if sent:
            await asyncio.gather(*sent)
        return len(sent)


class PositionedConsumer:
    """Reads `topics` from the positions `stored` answers, in batches of at most
    `batch_max` records (partition by partition, each in offset order), and gives each
    batch to `handle` with the batch's dead letters; `handle` commits the batch's output
    with `next_offsets(records)` and only then does the loop read on."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: Sequence[str],
        dead_letter_topic: str,
        batch_max: int,
        poll_timeout_ms: int,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.dead_letter_topic = dead_letter_topic
        self.batch_max = batch_max
        self.poll_timeout_ms = poll_timeout_ms
        self.shard = shard
        self.positions: dict[Position, int] = {}  # what the store holds: the next to read
        self.assigned: list[TopicPartition] = []

    def reached(self, ends: Mapping[Position, int]) -> bool:
        """Whether every record below `ends` is stored."""
        return all(self.positions.get(tp, 0) >= end for tp, end in ends.items())

    async def run(
        self,
        stored: Callable[[], Awaitable[Mapping[Position, int]]],
        handle: Callable[[Sequence[Record], DeadLetters], Awaitable[Mapping[Position, int]]],
        stop: asyncio.Event,
        *,
        until_caught_up: bool = False,
    ) -> None:
        """Consume until `stop`; with `until_caught_up`, only up to the ends of the topics
        as they were at the start (a rebuild), then return. `handle` answers the positions
        it committed."""
        consumer = AIOKafkaConsumer(
            **kafka_security.client_options(),
            bootstrap_servers=self.bootstrap,
            group_id=None,  # positions are PostgreSQL's, not Kafka's
            enable_auto_commit=False,
            # records of an aborted transaction never reach the store
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=1_048_576,
        )
        producer = acknowledged_producer(self.bootstrap, linger_ms=5)  # a letter never lost
        await consumer.start()
        await producer.start()
        try:
            found = await topic_partitions(self.bootstrap, self.topics, stop)
            if found is None:
                return
            if self.shard is not None:
                _same_partitions(found)
            self.assigned = in_shard(found, self.shard)
            self.positions = dict(await stored())
            consumer.assign(self.assigned)
            for tp in self.assigned:
                position = self.positions.get((tp.topic, tp.partition))
                if position is not None:
                    consumer.seek(tp, position)
                else:
                    await consumer.seek_to_beginning(tp)
            ends: dict[Position, int] = {}
            if until_caught_up:
                end_offsets = await consumer.end_offsets(self.assigned)
                ends = {(tp.topic, tp.partition): int(o) for tp, o in end_offsets.items()}
            log.info(
                "consuming %s from stored positions %s",
                [f"{tp.topic}[{tp.partition}]" for tp in self.assigned],
                self.positions,
            )
            letters = DeadLetters(producer, self.dead_letter_topic)
            while not stop.is_set():
                if until_caught_up and self.reached(ends):
                    return
                batch = await consumer.getmany(
                    timeout_ms=self.poll_timeout_ms, max_records=self.batch_max
                )
                records = [
                    r
                    for tp in sorted(batch, key=lambda t: (t.topic, t.partition))
                    for r in batch[tp]
                ]
                if records:
                    self.positions.update(await handle(records, letters))
        finally:
            await producer.stop()
            await consumer.stop()


def next_offsets(records: Sequence[Record]) -> dict[Position, int]:
    """Where each partition of a batch reads on: its last offset + 1."""
    out: dict[Position, int] = {}
    for r in records:
        key = (r.topic, r.partition)
        out[key] = max(out.get(key, 0), r.offset + 1)
    return out
