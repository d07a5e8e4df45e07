"""The decisions read model: relief.decisions.v1 into PostgreSQL, exactly once.

Same discipline as the journal's consumer: no consumer group, positions stored in
`ledger_positions` in the same transaction as the rows, a decision id seen again is a
no-op (`ON CONFLICT DO NOTHING` on the primary key), and a record that cannot be read
goes to relief.rejected.v1 — acknowledged before the position passes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from schemas.decisions import Decision
from schemas.registry import RecordError, decode, encode
from schemas.topics import RejectedRecord
from services.ledger.adapters.kafka import topic_partitions
from services.ledger.adapters.postgres import (
    LedgerStore,
    Pool,
    RetryPolicy,
    store_positions,
    with_retries,
)

log = logging.getLogger("relief.ledger.decisions")

INSERT_SQL = """
INSERT INTO relief_decisions (event_id, type, town, case_id, rule, occurred_at, recorded_at,
                              body, source_topic, source_partition, source_offset)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::timestamptz[], $7::timestamptz[], $8::jsonb[], $9::text[],
                     $10::integer[], $11::bigint[])
ON CONFLICT (event_id) DO NOTHING"""


def _stamp(record: ConsumerRecord[bytes, bytes]) -> datetime:
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


class DecisionsProjection:
    def __init__(
        self,
        pool: Pool,
        *,
        bootstrap: str,
        topic: str,
        rejected_topic: str,
        batch_max: int,
        poll_timeout_ms: int,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.pool = pool
        self.bootstrap = bootstrap
        self.topic = topic
        self.rejected_topic = rejected_topic
        self.batch_max = batch_max
        self.poll_timeout_ms = poll_timeout_ms
        self.retry = retry or RetryPolicy()
        self.stored = 0
        self.rejected = 0

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,  # positions are PostgreSQL's, not Kafka's
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all"
        )
        await consumer.start()
        await producer.start()
        try:
            tps = await topic_partitions(self.bootstrap, self.topic, stop)
            if tps is None:
                return
            stored = await LedgerStore(self.pool, self.retry).positions(self.topic)
            consumer.assign(tps)
            for tp in tps:
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            while not stop.is_set():
                batch = await consumer.getmany(
                    timeout_ms=self.poll_timeout_ms, max_records=self.batch_max
                )
                records = [r for tp in sorted(batch, key=lambda t: t.partition) for r in batch[tp]]
                if records:
                    await self.handle(records, producer)
        finally:
            await consumer.stop()
            await producer.stop()

    async def handle(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], producer: AIOKafkaProducer
    ) -> int:
        rows: list[tuple[Any, ...]] = []
        positions: dict[int, int] = {}
        dead_letters = []
        for r in records:
            positions[r.partition] = r.offset + 1
            try:
                record = decode(r.value or b"", recorded_at=_stamp(r))
                if not isinstance(record, Decision):
                    raise RecordError(f"{record.type} is not a decision")
            except RecordError as exc:
                rejected = RejectedRecord.of(
                    r.topic, r.partition, r.offset, str(exc), r.value, datetime.now(UTC)
                )
                dead_letters.append(
                    await producer.send(self.rejected_topic, key=r.key, value=encode(rejected))
                )
                continue
            rows.append(
                (
                    record.event_id,
                    record.type,
                    record.town,
                    record.correlation_id,
                    record.rule,
                    record.occurred_at,
                    record.recorded_at,
                    json.dumps(record.model_dump(mode="json"), ensure_ascii=False),
                    r.topic,
                    r.partition,
                    r.offset,
                )
            )
        if dead_letters:
            await asyncio.gather(*dead_letters)
            self.rejected += len(dead_letters)
        await with_retries(lambda: self._store(rows, positions), self.retry, "storing decisions")
        self.stored += len(rows)
        return len(rows)

    async def _store(self, rows: list[tuple[Any, ...]], positions: dict[int, int]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            if rows:
                await conn.execute(INSERT_SQL, *(list(col) for col in zip(*rows, strict=True)))
            await store_positions(conn, {(self.topic, p): o for p, o in positions.items()})


# ---------------------------------------------------------------- read side

OPEN_DEADLINES_SQL = """
WITH started AS (
    SELECT case_id, town, 'relief_24h' AS deadline, (body->>'due_at')::timestamptz AS due_at,
           occurred_at
      FROM relief_decisions
     WHERE town = $1 AND type = 'AdvanceGranted'
    UNION ALL
    SELECT case_id, town, 'paperwork_5d', occurred_at + $2::interval, occurred_at
      FROM relief_decisions
     WHERE town = $1 AND type = 'AdvanceGranted'
)
SELECT s.case_id, s.deadline, s.due_at,
       EXISTS (SELECT 1 FROM relief_decisions w
                WHERE w.town = s.town AND w.case_id = s.case_id AND w.type = 'DeadlineWarned'
                  AND w.body->>'deadline' = s.deadline) AS warned
  FROM started s
 WHERE NOT EXISTS (
        SELECT 1 FROM relief_decisions e
         WHERE e.town = s.town AND e.case_id = s.case_id
           AND (e.type = 'AdvanceVoided'
                OR (e.type IN ('DeadlineMet', 'DeadlineBreached')
                    AND e.body->>'deadline' = s.deadline)))
 ORDER BY s.due_at, s.case_id
 LIMIT $3"""

CASE_DECISIONS_SQL = """
SELECT event_id, type, town, rule, occurred_at, recorded_at, body
  FROM relief_decisions
 WHERE case_id = $1
 ORDER BY occurred_at, type
 LIMIT $2"""


async def open_deadlines(
    db: Pool | asyncpg.Connection[Any], town: str, paperwork_period: Any, limit: int
) -> list[Any]:
    """Deadlines of the town's urgent advances not yet met, breached or voided (R5, P1)."""
    return list(await db.fetch(OPEN_DEADLINES_SQL, town, paperwork_period, limit))


async def case_decisions(db: Pool | asyncpg.Connection[Any], case_id: str, limit: int) -> list[Any]:
    return list(await db.fetch(CASE_DECISIONS_SQL, case_id, limit))
