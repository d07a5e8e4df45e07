"""The casebook's consumer: relief.decisions.v1, relief.rejected.v1 and relief.intake.v1
into PostgreSQL, exactly once.

No consumer group: the positions are PostgreSQL's, stored with the rows of each batch,
and the consumer seeks to them at start. A decision that cannot be read goes to
relief.rejected.v1 with its reason, stamped with the record's broker time; the position
passes it only once Kafka has acknowledged the letter: while Kafka refuses it the
consumer waits on the send (the producer retries), and if the send fails it exits with
the position before the record, to read it again when restarted
(tests/faults/test_casebook_dead_letter_send_fails.py). An
intake record or a dead letter the casebook cannot read is skipped and counted: the
processor dead-letters intake records itself, and a dead letter is never sent on again.

`ProgressWatcher` looks at the processor's committed offsets on the intake topic; once
the casebook has read everything the processor had sent when it committed them, they
are stored as `progress`: an intake record below them decided nothing if no decision
or dead letter names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from relief_platform import kafka_security
from schemas.decisions import Decision
from schemas.envelope import Record
from schemas.intake import DisclosurePublished, HardshipFollowedUp, HardshipListPushed
from schemas.registry import RecordError, decode, decode_as, encode
from schemas.topics import RejectedRecord
from services.casebook.adapters.postgres import (
    Batch,
    CasebookStore,
    Publication,
    ReadDecision,
    Stored,
)
from services.casebook.domain import hardship
from services.casebook.domain.submissions import (
    NotASubmission,
    Rejection,
    rejection,
    submitted,
)

log = logging.getLogger("relief.casebook.consumer")
R = TypeVar("R", bound=Record)

TOPIC_WAIT_S = 1.0
TOPIC_WAIT_MAX_S = 300.0
MAX_PENDING_OBSERVATIONS = 100  # progress readings waiting for the casebook to catch up

Position = tuple[str, int]  # (topic, partition)


def _stamp(record: ConsumerRecord[bytes, bytes]) -> datetime:
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


async def topic_partitions(
    bootstrap: str, names: Sequence[str], stop: asyncio.Event
) -> list[TopicPartition] | None:
    """Every partition of `names`, waiting (bounded) for each topic to exist."""
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


@dataclasses.dataclass
class Counts:
    decisions: int = 0
    duplicates: int = 0
    submissions: int = 0
    rejections: int = 0
    dead_letters: int = 0  # decisions the casebook could not read, sent on
    skipped: int = 0  # intake records and dead letters it could not read


class CasebookConsumer:
    def __init__(
        self,
        store: CasebookStore,
        *,
        bootstrap: str,
        intake_topic: str,
        decisions_topic: str,
        rejected_topic: str,
        batch_max: int,
        poll_timeout_ms: int,
        on_batch: Callable[[Stored, float], None] | None = None,
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.intake_topic = intake_topic
        self.decisions_topic = decisions_topic
        self.rejected_topic = rejected_topic
        self.batch_max = batch_max
        self.poll_timeout_ms = poll_timeout_ms
        self.on_batch = on_batch
        self.counts = Counts()
        # what PostgreSQL holds: (topic, partition) -> the next offset to read
        self.positions: dict[Position, int] = {}

    @property
    def topics(self) -> tuple[str, str, str]:
        return (self.decisions_topic, self.rejected_topic, self.intake_topic)

    def reached(self, ends: Mapping[Position, int]) -> bool:
        """Whether every record below `ends` is stored."""
        return all(self.positions.get(tp, 0) >= end for tp, end in ends.items())

    async def run(self, stop: asyncio.Event, *, until_caught_up: bool = False) -> None:
        """Consume until `stop`; with `until_caught_up`, only up to the ends of the topics
        as they were at the start (a rebuild), then return."""
        consumer = AIOKafkaConsumer(
            **kafka_security.client_options(),
            bootstrap_servers=self.bootstrap,
            group_id=None,  # positions are PostgreSQL's, not Kafka's
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=1_048_576,
        )
        producer = AIOKafkaProducer(
            **kafka_security.client_options(),
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,  # a dead letter is never lost
            acks="all",
            linger_ms=5,
        )
        await consumer.start()
        await producer.start()
        try:
            tps = await topic_partitions(self.bootstrap, self.topics, stop)
            if tps is None:
                return
            self.positions = await self.store.positions(self.topics)
            consumer.assign(tps)
            for tp in tps:
                stored = self.positions.get((tp.topic, tp.partition))
                if stored is not None:
                    consumer.seek(tp, stored)
                else:
                    await consumer.seek_to_beginning(tp)
            ends: dict[Position, int] = {}
            if until_caught_up:
                found = await consumer.end_offsets(tps)
                ends = {(tp.topic, tp.partition): int(o) for tp, o in found.items()}
            log.info("consuming %s from stored positions %s", self.topics, self.positions)
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
                    await self.handle(records, producer)
        finally:
            await producer.stop()
            await consumer.stop()

    async def handle(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], producer: AIOKafkaProducer
    ) -> Stored:
        batch = Batch()
        dead_letters = []
        for r in records:
            key = (r.topic, r.partition)
            batch.positions[key] = max(batch.positions.get(key, 0), r.offset + 1)
            if r.topic == self.decisions_topic:
                try:
                    record = decode(r.value or b"", recorded_at=_stamp(r))
                    if not isinstance(record, Decision):
                        raise RecordError(f"{record.type} is not a decision")
                except RecordError as exc:
                    log.warning("rejected %s/%d@%d: %s", r.topic, r.partition, r.offset, exc)
                    # stamped with the failing record's broker time, as every output is
                    # (not the host clock): a re-sent letter is the same letter
                    dead = RejectedRecord.of(
                        r.topic, r.partition, r.offset, str(exc), r.value, _stamp(r)
                    )
                    dead_letters.append(
                        await producer.send(self.rejected_topic, key=r.key, value=encode(dead))
                    )
                    continue
                raw = (r.value or b"").decode("utf-8")  # decode() read it: valid UTF-8
                batch.decisions.append(ReadDecision(record, r.partition, r.offset, raw))
            elif r.topic == self.intake_topic:
                try:
                    seen = submitted(r.value or b"", r.partition, r.offset)
                except NotASubmission:
                    continue  # clock ticks, mostly; the processor dead-letters the rest
                batch.submissions.append(seen)
                if seen.type == "DisclosurePublished":
                    published = self._publication(r)
                    if published is not None:
                        batch.publications.append(published)
                elif seen.type == "HardshipListPushed":
                    pushed = self._intake(r, HardshipListPushed)
                    if pushed is not None:
                        at = hardship.Where(r.partition, r.offset)
                        batch.hardship_lists.append(
                            (hardship.pushed(pushed, _stamp(r), at), hardship.list_rows(pushed))
                        )
                elif seen.type == "HardshipFollowedUp":
                    followed = self._intake(r, HardshipFollowedUp)
                    if followed is not None:
                        at = hardship.Where(r.partition, r.offset)
                        batch.follow_ups.append(hardship.follow_up(followed, _stamp(r), at))
            elif r.topic == self.rejected_topic:
                found = self._rejection(r.value or b"")
                if found is not None:
                    batch.rejections.append(found)
        if dead_letters:
            # acknowledged before the position passes them: a crash re-sends, never loses
            await asyncio.gather(*dead_letters)
            self.counts.dead_letters += len(dead_letters)
        started = time.perf_counter()
        stored = await self.store.store(batch)
        elapsed = time.perf_counter() - started
        self.positions.update(batch.positions)
        self.counts.decisions += stored.decisions
        self.counts.duplicates += stored.duplicates
        self.counts.submissions += stored.submissions
        self.counts.rejections += stored.rejections
        if self.on_batch is not None:
            self.on_batch(stored, elapsed)
        return stored

    def _publication(self, r: ConsumerRecord[bytes, bytes]) -> Publication | None:
        """P7: a town's list published; one that does not read is the processor's to
        dead-letter (it reads the same record) and is skipped here."""
        try:
            record = decode_as(r.value or b"", DisclosurePublished, recorded_at=_stamp(r))
        except RecordError as exc:
            log.warning("publication %d@%d not read: %s", r.partition, r.offset, exc)
            self.counts.skipped += 1
            return None
        return Publication(record, _stamp(r), r.partition, r.offset)

    def _intake(self, r: ConsumerRecord[bytes, bytes], kind: type[R]) -> R | None:
        """An intake record the casebook keeps (section 二); one that does not read is
        the processor's to dead-letter (it reads the same record) and is skipped here."""
        try:
            return decode_as(r.value or b"", kind, recorded_at=_stamp(r))
        except RecordError as exc:
            log.warning("%s %d@%d not read: %s", kind.__name__, r.partition, r.offset, exc)
            self.counts.skipped += 1
            return None

    def _rejection(self, value: bytes) -> Rejection | None:
        """A dead letter of the intake topic, tied back to its record; None for others."""
        try:
            data = json.loads(value)
            if not isinstance(data, dict) or data.get("source_topic") != self.intake_topic:
                return None
            return rejection(data)
        except (ValueError, KeyError, TypeError):
            self.counts.skipped += 1
            return None


class ProgressWatcher:
    """Stores how far the processor has got on the intake topic, once the casebook has
    read what the processor had sent by then (see the module's docstring)."""

    def __init__(
        self,
        consumer: CasebookConsumer,
        *,
        group: str,
        interval_s: float,
        timeout_s: float,
    ) -> None:
        self.consumer = consumer
        self.group = group
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.pending: list[tuple[dict[int, int], dict[Position, int]]] = []

    async def run(self, stop: asyncio.Event) -> None:
        c = self.consumer
        timeout_ms = int(self.timeout_s * 1000)
        admin = AIOKafkaAdminClient(
            **kafka_security.client_options(),
            bootstrap_servers=c.bootstrap,
            request_timeout_ms=timeout_ms,
        )
        offsets = AIOKafkaConsumer(
            **kafka_security.client_options(),
            bootstrap_servers=c.bootstrap,
            group_id=None,  # reads offsets only: never joins (or disturbs) the group
            enable_auto_commit=False,
            request_timeout_ms=timeout_ms,
        )
        await admin.start()
        await offsets.start()
        try:
            while not stop.is_set():
                try:
                    await self.step(admin, offsets)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Kafka or PostgreSQL away: next time
                    log.info("processor progress not read: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval_s)
        finally:
            await offsets.stop()
            await admin.close()

    async def step(self, admin: AIOKafkaAdminClient, offsets: AIOKafkaConsumer) -> None:
        c = self.consumer
        committed_all = await admin.list_consumer_group_offsets(self.group)
        committed = {
            tp.partition: int(meta.offset)
            for tp, meta in committed_all.items()
            if tp.topic == c.intake_topic and meta.offset >= 0
        }
        if committed:
            described = await admin.describe_topics([c.decisions_topic, c.rejected_topic])
            tps = [
                TopicPartition(d["topic"], p["partition"])
                for d in described
                if d.get("error_code", 0) == 0
                for p in d.get("partitions", [])
            ]
            ends = {
                (tp.topic, tp.partition): int(o)
                for tp, o in (await offsets.end_offsets(tps)).items()
            }
            # read after the commits: whatever the processor sent before committing is below
            self.pending.append((committed, ends))
            del self.pending[:-MAX_PENDING_OBSERVATIONS]
        ready = [obs for obs in self.pending if c.reached(obs[1])]
        if not ready:
            return
        through: dict[int, int] = {}
        for seen, _ in ready:
            for partition, offset in seen.items():
                through[partition] = max(through.get(partition, 0), offset)
        await c.store.set_progress(through)
        self.pending = [obs for obs in self.pending if not c.reached(obs[1])]
