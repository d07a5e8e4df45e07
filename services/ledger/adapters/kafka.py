"""The consumer of ledger.postings.v1: exactly once into PostgreSQL.

Positions live in PostgreSQL, written in the same transaction as the postings they
produced (relief_platform.positioned: no consumer group, seek to the stored positions on
start, never an offset committed to Kafka; docs/design.md "effectively once"). A record
that cannot be parsed goes to relief.rejected.v1 with its reason — acknowledged by Kafka
before its position is stored — and later records still flow.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence

from relief_platform.positioned import (
    DeadLetters,
    Position,
    PositionedConsumer,
    Record,
    broker_time,
    next_offsets,
)
from schemas.postings import Posting
from schemas.registry import RecordError, decode_as
from services.ledger.adapters.postgres import LedgerStore
from services.ledger.domain.entries import (
    IncomingPosting,
    Line,
    PostingError,
    SourcePosition,
    check_posting,
)

log = logging.getLogger("relief.ledger.consumer")


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
        stored = self.store.positions

        async def positions() -> dict[Position, int]:
            return {(self.topic, p): offset for p, offset in (await stored(self.topic)).items()}

        consumer = PositionedConsumer(
            bootstrap=self.bootstrap,
            topics=[self.topic],
            dead_letter_topic=self.rejected_topic,
            batch_max=self.batch_max_postings,
            poll_timeout_ms=self.poll_timeout_ms,
            shard=self.shard,
        )
        await consumer.run(positions, self.handle, stop or asyncio.Event())

    async def handle(self, records: Sequence[Record], letters: DeadLetters) -> dict[Position, int]:
        """Store a batch with its positions (what it answers), its dead letters first."""
        postings: list[IncomingPosting] = []
        for r in records:
            try:
                postings.append(parse_record(r.topic, r.partition, r.offset, r.timestamp, r.value))
            except (RecordError, PostingError, UnicodeDecodeError) as exc:
                await letters.send(r, str(exc) or type(exc).__name__)
        # acknowledged before the position passes them: a crash re-sends, never loses
        self.rejected += await letters.acknowledged()
        positions = next_offsets(records)
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
        return positions
