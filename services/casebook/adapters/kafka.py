"""The casebook's consumer: relief.decisions.v1, relief.rejected.v1 and relief.intake.v1
into PostgreSQL, exactly once.

No consumer group: the positions are PostgreSQL's, stored with the rows of each batch,
and the consumer seeks to them at start. A decision that cannot be read goes to
relief.rejected.v1 with its reason (acknowledged before the position passes it). An
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
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from relief_platform import kafka_security
from relief_platform.positioned import (
    DeadLetters,
    Position,
    PositionedConsumer,
    next_offsets,
    stamp_of,
)
from schemas.decisions import Decision
from schemas.envelope import Record
from schemas.intake import DisclosurePublished, HardshipFollowedUp, HardshipListPushed
from schemas.registry import RecordError, decode, decode_as
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

MAX_PENDING_OBSERVATIONS = 100  # progress readings waiting for the casebook to catch up


@dataclasses.dataclass
class Counts:
    decisions: int = 0
    duplicates: int = 0
    submissions: int = 0
    rejections: int = 0
    dead_letters: int = 0  # decisions the casebook could not read, sent on
    skipped: int = 0  # intake records and dead letters it could not read


class CasebookConsumer:
    """Folds a batch of the three topics into PostgreSQL with its positions, through the
    platform's positioned consumer (`shard` (k, n): the partitions p % n == k of each)."""

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
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.intake_topic = intake_topic
        self.decisions_topic = decisions_topic
        self.rejected_topic = rejected_topic
        self.on_batch = on_batch
        self.counts = Counts()
        self.reader = PositionedConsumer(
            bootstrap=bootstrap,
            topics=self.topics,
            dead_letter_topic=rejected_topic,
            batch_max=batch_max,
            poll_timeout_ms=poll_timeout_ms,
            shard=shard,
        )

    @property
    def topics(self) -> tuple[str, str, str]:
        return (self.decisions_topic, self.rejected_topic, self.intake_topic)

    @property
    def positions(self) -> dict[Position, int]:
        """What PostgreSQL holds: (topic, partition) -> the next offset to read."""
        return self.reader.positions

    @property
    def assigned(self) -> set[Position]:
        """The partitions this consumer reads (its shard's; empty before it starts)."""
        return {(tp.topic, tp.partition) for tp in self.reader.assigned}

    def reached(self, ends: Mapping[Position, int]) -> bool:
        """Whether every record below `ends` is stored."""
        return self.reader.reached(ends)

    async def run(self, stop: asyncio.Event, *, until_caught_up: bool = False) -> None:
        """Consume until `stop`; with `until_caught_up`, only up to the ends of the topics
        as they were at the start (a rebuild), then return."""

        async def stored() -> dict[Position, int]:
            return await self.store.positions(self.topics)

        await self.reader.run(stored, self.handle, stop, until_caught_up=until_caught_up)

    async def handle(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], letters: DeadLetters
    ) -> dict[Position, int]:
        """Fold a batch and store it with its positions (what it answers), its dead letters
        acknowledged first."""
        batch = Batch()
        batch.positions.update(next_offsets(records))
        for r in records:
            if r.topic == self.decisions_topic:
                try:
                    record = decode(r.value or b"", recorded_at=stamp_of(r))
                    if not isinstance(record, Decision):
                        raise RecordError(f"{record.type} is not a decision")
                except RecordError as exc:
                    await letters.send(r, str(exc))
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
                            (hardship.pushed(pushed, stamp_of(r), at), hardship.list_rows(pushed))
                        )
                elif seen.type == "HardshipFollowedUp":
                    followed = self._intake(r, HardshipFollowedUp)
                    if followed is not None:
                        at = hardship.Where(r.partition, r.offset)
                        batch.follow_ups.append(hardship.follow_up(followed, stamp_of(r), at))
            elif r.topic == self.rejected_topic:
                found = self._rejection(r.value or b"")
                if found is not None:
                    batch.rejections.append(found)
        # acknowledged before the position passes them: a crash re-sends, never loses
        self.counts.dead_letters += await letters.acknowledged()
        started = time.perf_counter()
        stored = await self.store.store(batch)
        elapsed = time.perf_counter() - started
        self.counts.decisions += stored.decisions
        self.counts.duplicates += stored.duplicates
        self.counts.submissions += stored.submissions
        self.counts.rejections += stored.rejections
        if self.on_batch is not None:
            self.on_batch(stored, elapsed)
        return batch.positions

    def _publication(self, r: ConsumerRecord[bytes, bytes]) -> Publication | None:
        """P7: a town's list published; one that does not read is the processor's to
        dead-letter (it reads the same record) and is skipped here."""
        try:
            record = decode_as(r.value or b"", DisclosurePublished, recorded_at=stamp_of(r))
        except RecordError as exc:
            log.warning("publication %d@%d not read: %s", r.partition, r.offset, exc)
            self.counts.skipped += 1
            return None
        return Publication(record, stamp_of(r), r.partition, r.offset)

    def _intake(self, r: ConsumerRecord[bytes, bytes], kind: type[R]) -> R | None:
        """An intake record the casebook keeps (section 二); one that does not read is
        the processor's to dead-letter (it reads the same record) and is skipped here."""
        try:
            return decode_as(r.value or b"", kind, recorded_at=stamp_of(r))
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
        mine = c.assigned  # a shard watches its own partitions: a town's are in one shard
        if not mine:
            return  # not reading yet
        committed_all = await admin.list_consumer_group_offsets(self.group)
        committed = {
            tp.partition: int(meta.offset)
            for tp, meta in committed_all.items()
            if tp.topic == c.intake_topic and meta.offset >= 0 and (tp.topic, tp.partition) in mine
        }
        if committed:
            tps = [
                TopicPartition(topic, partition)
                for topic, partition in sorted(mine)
                if topic in (c.decisions_topic, c.rejected_topic)
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
