"""The consumer of ledger.postings.v1: exactly once into PostgreSQL.

Positions live in PostgreSQL, written in the same transaction as the postings they
produced; the consumer assigns itself the topic's partitions and seeks to the stored
positions on start, and never commits offsets to Kafka (docs/design.md "effectively once").
A record that cannot be parsed goes to relief.rejected.v1 with its reason — acknowledged
by Kafka before its position is stored — and later records still flow.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from relief_platform import kafka_security
from schemas.postings import Posting
from schemas.registry import RecordError, decode_as, encode
from schemas.topics import RejectedRecord
from services.ledger.adapters.postgres import BatchResult, LedgerStore
from services.ledger.domain.entries import (
    IncomingPosting,
    Line,
    PostingError,
    SourcePosition,
    check_posting,
)

log = logging.getLogger("relief.ledger.consumer")

# How long to wait for the postings topic to exist before each new look (the ledger may
# start before the processor has created it).
TOPIC_WAIT_S = 1.0
TOPIC_WAIT_MAX_S = 300.0


def broker_time(timestamp_ms: int | None) -> datetime | None:
    """The broker's stamp of a record (its log-append or create time), as a datetime."""
    return None if timestamp_ms is None else datetime.fromtimestamp(timestamp_ms / 1000, UTC)


def parse_record(
    topic: str, partition: int, offset: int, timestamp_ms: int | None, value: bytes | None
) -> IncomingPosting:
    """A Kafka record as a posting the book can take, else PostingError / RecordError."""
    if value is None:
        raise PostingError("empty record value")
    posting = decode_as(value, Posting, recorded_at=broker_time(timestamp_ms))
    incoming = IncomingPosting(
        posting_id=posting.posting_id,
        kind=posting.kind,
        town=posting.town,
        correlation_id=posting.correlation_id,
        causation_id=posting.causation_id,
        occurred_at=posting.occurred_at,
        recorded_at=posting.recorded_at,
        memo=posting.memo,
        lines=tuple(Line(ln.account, str(ln.side), ln.amount_fen) for ln in posting.lines),
        source=SourcePosition(topic, partition, offset),
        raw=value.decode("utf-8"),
    )
    check_posting(incoming)  # the book's own rules, once more (STYLE "every invariant twice")
    return incoming


async def topic_partitions(
    bootstrap: str, topic: str, stop: asyncio.Event
) -> list[TopicPartition] | None:
    """A topic's partitions, waiting (bounded) for the topic to exist; None if stopped."""
    admin = AIOKafkaAdminClient(**kafka_security.client_options(), bootstrap_servers=bootstrap)
    await admin.start()
    try:
        waited = 0.0
        while not stop.is_set():
            (described,) = await admin.describe_topics([topic])
            found = sorted(p["partition"] for p in described.get("partitions", []))
            if described.get("error_code", 0) == 0 and found:
                return [TopicPartition(topic, p) for p in found]
            if waited >= TOPIC_WAIT_MAX_S:
                raise RuntimeError(f"topic {topic} does not exist after {waited:.0f} s")
            await asyncio.sleep(TOPIC_WAIT_S)
            waited += TOPIC_WAIT_S
        return None
    finally:
        await admin.close()


class LedgerConsumer:
    """Reads postings in batches of at most `batch_max_postings` and stores each batch with
    its positions in one PostgreSQL transaction."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        bootstrap: str,
        topic: str,
        rejected_topic: str,
        batch_max_postings: int,
        poll_timeout_ms: int,
        crash_after_commits: int | None = None,
        on_batch_stored: Callable[[float], None] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.shard = shard  # (k, n): only the partitions p with p % n == k
        self.store = store
        self.on_batch_stored = on_batch_stored  # seconds per committed batch, for /metrics
        self.bootstrap = bootstrap
        self.topic = topic
        self.rejected_topic = rejected_topic
        self.batch_max_postings = batch_max_postings
        self.poll_timeout_ms = poll_timeout_ms
        self.crash_after_commits = crash_after_commits
        self.commits = 0
        self.stored = 0
        self.rejected = 0
        self.alerts = 0
        self.duplicates = 0

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        consumer = AIOKafkaConsumer(
            **kafka_security.client_options(),
            bootstrap_servers=self.bootstrap,
            group_id=None,  # no group: positions are PostgreSQL's, not Kafka's
            enable_auto_commit=False,
            # postings from an aborted transaction of the processor never reach the book
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=1_048_576,
        )
        producer = AIOKafkaProducer(
            **kafka_security.client_options(),
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,  # forces acks="all": a dead letter is never lost
            acks="all",
            linger_ms=5,
        )
        await consumer.start()
        await producer.start()
        try:
            partitions = await self._partitions(stop)
            if partitions is None:
                return
            stored = await self.store.positions(self.topic)
            consumer.assign(partitions)
            for tp in partitions:
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            log.info(
                "consuming %s partitions %s from stored positions %s",
                self.topic,
                [tp.partition for tp in partitions],
                stored,
            )
            while not stop.is_set():
                batch = await consumer.getmany(
                    timeout_ms=self.poll_timeout_ms, max_records=self.batch_max_postings
                )
                records = [r for tp in sorted(batch, key=lambda t: t.partition) for r in batch[tp]]
                if records:
                    await self.handle(records, producer)
        finally:
            await producer.stop()
            await consumer.stop()

    async def _partitions(self, stop: asyncio.Event) -> list[TopicPartition] | None:
        found = await topic_partitions(self.bootstrap, self.topic, stop)
        if found is None or self.shard is None:
            return found
        k, n = self.shard
        return [tp for tp in found if tp.partition % n == k]

    async def handle(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], producer: AIOKafkaProducer
    ) -> BatchResult:
        postings: list[IncomingPosting] = []
        positions: dict[tuple[str, int], int] = {}
        dead_letters = []
        for r in records:
            positions[(r.topic, r.partition)] = max(
                positions.get((r.topic, r.partition), 0), r.offset + 1
            )
            try:
                postings.append(parse_record(r.topic, r.partition, r.offset, r.timestamp, r.value))
            except (RecordError, PostingError, UnicodeDecodeError) as exc:
                reason = str(exc) or type(exc).__name__
                log.warning("rejected %s/%d@%d: %s", r.topic, r.partition, r.offset, reason)
                # stamped with the failing record's broker time, as every output is (not
                # the host clock): a re-sent letter is the same letter, byte for byte
                rejected = RejectedRecord.of(
                    r.topic, r.partition, r.offset, reason, r.value, broker_time(r.timestamp)
                )
                dead_letters.append(
                    await producer.send(self.rejected_topic, key=r.key, value=encode(rejected))
                )
        if dead_letters:
            # acknowledged before the position passes them: a crash re-sends, never loses
            await asyncio.gather(*dead_letters)
            self.rejected += len(dead_letters)
        started = time.perf_counter()
        result = await self.store.store_batch(postings, positions)
        if self.on_batch_stored is not None:
            self.on_batch_stored(time.perf_counter() - started)
        self.commits += 1
        self.stored += result.stored
        self.alerts += result.alerts
        self.duplicates += result.duplicates
        if self.crash_after_commits is not None and self.commits >= self.crash_after_commits:
            # tests only: die between the PostgreSQL commit and anything after it
            os.kill(os.getpid(), signal.SIGKILL)
        return result
