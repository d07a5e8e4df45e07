"""The Faust wiring around the pure rules: read intake, decide, emit, remember.

Effectively once without Kafka transactions (docs/design.md): the worker runs `at_least_once`,
and for every batch of intake records it

1. decides each record for its town in a `Book` over the table (pure: `domain.decide`),
2. sends every output (decisions, postings, dead letters) with an idempotent producer
   and **waits until Kafka has acknowledged them all**,
3. stores what the books changed, per town, in this order: a journal of the batch (each
   changed key with its value *before* the batch), the new values (the town's figures
   last), then the town's position (the offset of the last record applied to it);
4. sends those writes to the table's changelog itself (one burst on the same idempotent
   producer, in order per partition) and waits for every ack; only then is the batch
   acknowledged.

Any failure to decide, send or store exits the process at once without acknowledging
the batch (`EXIT_*`): the supervisor restarts it and the records are decided again.
Nothing is lost, and nothing is decided twice:

- a crash before (3) redelivers the batch against the old state: the rules are pure and
  every output id derives from its cause, so the same ids come out and downstream keeps
  them once;
- records at or below a town's position were applied; they are skipped;
- a crash *during* (3) or before (4) can leave the changelog with part of the batch. The
  first time a worker touches a town it reads the journal: a batch whose position was
  never stored is taken back (the before-values are written again), and a stored one is
  written again whole, since the local store may hold what the changelog lacks. So the
  next owner of the partition, even with an empty data folder, finds a whole batch or
  none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import weakref
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import faust.streams as faust_streams
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from relief_platform import kafka_security
from relief_platform.producer import acknowledged_producer
from schemas import topics
from schemas.intake import ClockTick, ReliefRequested
from schemas.registry import RecordError, decode
from services.emergency.adapters import metrics
from services.emergency.adapters.outputs import Output, rejected_record, to_output
from services.emergency.adapters.partitions import towns_on
from services.emergency.domain.book import Book
from services.emergency.domain.decide import Rules, decide
from services.emergency.settings import EmergencySettings

log = logging.getLogger("relief.emergency")

EXIT_BUG = 70  # EX_SOFTWARE: an invariant broke
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: Kafka did not acknowledge outputs or state in time
JOURNAL_PAGE_BYTES = 256 * 1024  # one stored journal page (Kafka refuses records over 1 MB)


class OutputSink:
    """An idempotent producer (acks=all) for everything the processor emits."""

    def __init__(self, bootstrap: str, timeout_s: float, topic_names: dict[str, str]) -> None:
        self._bootstrap = bootstrap
        self._topic_names = topic_names  # the service's topic -> the name on this cluster
        self.timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._partition_cache: dict[tuple[str, bytes], int] = {}  # (topic, key) -> partition
        self._partitioner = DefaultPartitioner()

    async def start(self) -> None:
        if self._producer is not None:
            return
        self._producer = acknowledged_producer(
            self._bootstrap,
            linger_ms=0,  # whole batches are handed over (send_batch): no waiting to fill them
            max_batch_size=256 * 1024,
            request_timeout_ms=int(self.timeout_s * 1000),
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send_all(self, outputs: Sequence[Output], timestamp_ms: int | None = None) -> None:
        """Every output, stamped `timestamp_ms` (the broker's time of the batch, never this
        host's clock: see `Engine.broker_ms`), each to the partition its key gives."""
        if not outputs:
            return
        producer = self._started()
        grouped: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        for out in outputs:
            topic = self._topic_names.get(out.topic, out.topic)
            key = out.key.encode()
            grouped.setdefault((topic, await self._partition_of(topic, key)), []).append(
                (key, out.value)
            )
        await self._send_grouped(producer, grouped, timestamp_ms)

    async def send_raw(
        self,
        topic: str,
        records: Sequence[tuple[int, bytes, bytes | None]],
        timestamp_ms: int | None = None,
    ) -> dict[int, int]:
        """Records already encoded, each to its partition, in order; the offset of the
        last record written to each partition."""
        producer = self._started()
        grouped: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        for partition, key, value in records:
            grouped.setdefault((topic, partition), []).append((key, value))
        last = await self._send_grouped(producer, grouped, timestamp_ms)
        return {partition: offset for (_, partition), offset in last.items()}

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("output sink used before it started")
        return self._producer

    async def _partition_of(self, topic: str, key: bytes) -> int:
        """The partition of `key` as every producer of the service picks it (aiokafka's
        and Java's default: murmur2 of the key), so a town's records stay together."""
        known = self._partition_cache.get((topic, key))
        if known is not None:
            return known
        partitions = sorted(await self._started().partitions_for(topic))
        partition = int(self._partitioner(key, partitions, partitions))
        # keys are towns, the claims stage's one key and source topics: a few hundred
        self._partition_cache[(topic, key)] = partition
        return partition

    async def _send_grouped(
        self,
        producer: AIOKafkaProducer,
        grouped: Mapping[tuple[str, int], Sequence[tuple[bytes | None, bytes | None]]],
        timestamp_ms: int | None,
    ) -> dict[tuple[str, int], int]:
        """Each partition's records in as few producer batches as fit (in order, on the
        idempotent producer), and wait until Kafka has acknowledged every one of them.
        One future a batch instead of one a record: the producer's bookkeeping of single
        records cost more than the records themselves. Returns each partition's last
        offset written."""
        sent: list[tuple[tuple[str, int], int, Any]] = []
        for (topic, partition), records in grouped.items():
            builder = producer.create_batch()
            count = 0
            for key, value in records:
                if builder.append(key=key, value=value, timestamp=timestamp_ms) is None:
                    future = await producer.send_batch(builder, topic, partition=partition)
                    sent.append(((topic, partition), count, future))
                    builder = producer.create_batch()
                    count = 0
                    # (an empty batch always takes its first record, whatever its size)
                    builder.append(key=key, value=value, timestamp=timestamp_ms)
                count += 1
            if count:
                future = await producer.send_batch(builder, topic, partition=partition)
                sent.append(((topic, partition), count, future))
        written = await asyncio.wait_for(
            asyncio.gather(*(future for _, _, future in sent)), self.timeout_s
        )
        last: dict[tuple[str, int], int] = {}
        for (tp, count, _), meta in zip(sent, written, strict=True):
            last[tp] = max(last.get(tp, -1), meta.offset + count - 1)
        return last


def _stamp(message: Any) -> datetime:
    """The broker's LogAppendTime stamp of an intake record: its `recorded_at`."""
    return datetime.fromtimestamp(message.timestamp, UTC)


def recorded_when_claimed(record: Any) -> Any:
    """A request forwarded by the county's claims stage was recorded when the claims
    topic took it (intake's 202), not when the stage forwarded it: R5's 24 hours run from
    then, so a stage that was down or behind cannot move a household's deadline later."""
    claim = getattr(record, "claim", None)
    if (
        isinstance(record, ReliefRequested)
        and claim is not None
        and record.recorded_at is not None
        and claim.claimed_at < record.recorded_at
    ):
        return record.model_copy(update={"recorded_at": claim.claimed_at})
    return record


def raw_key(key: str) -> bytes:
    """A table key as Faust's json key codec writes it: the worker reads and writes the
    store directly, and Faust's recovery and table views must find the same keys."""
    if key.isascii() and key.isprintable() and '"' not in key and "\\" not in key:
        return b'"' + key.encode() + b'"'  # what json.dumps gives, for a fraction of it
    return json.dumps(key).encode()


def as_text(stored: Any) -> str | None:
    """A stored value (its JSON bytes, or a JSON-compatible value) as JSON text."""
    if stored is None or isinstance(stored, str):
        return stored
    if isinstance(stored, bytes):
        return stored.decode()
    return json.dumps(stored, separators=(",", ":"), ensure_ascii=False)


def journal_pages(images: Sequence[tuple[str, str | None]]) -> list[list[tuple[str, Any]]]:
    """Before-images (each key's stored JSON text, None: absent) in pages of at most
    JOURNAL_PAGE_BYTES (each value is far smaller)."""
    pages: list[list[tuple[str, Any]]] = [[]]
    size = 0
    for key, value in images:
        # (most before-images are None: a key the batch created; no need to encode those)
        entry = (
            len(key) + 8
            if value is None
            else len(json.dumps([key, value], ensure_ascii=False).encode())
        )
        if pages[-1] and size + entry > JOURNAL_PAGE_BYTES:
            pages.append([])
            size = 0
        pages[-1].append((key, value))
        size += entry
    return pages


class Engine:
    """Decides batches of intake events; the only place that touches the table."""

    def __init__(
        self,
        rules: Rules,
        sink: OutputSink,
        table: Any,
        partitions: int,
        changelog: str | None = None,
    ) -> None:
        self.rules = rules
        self.sink = sink
        self.table = table
        self.partitions = partitions
        # The table's changelog topic. The engine writes it itself, in one burst per batch
        # on its own idempotent producer, instead of record by record through Faust's
        # (which cost more than deciding); None: `table` is a plain mapping.
        self.changelog = changelog
        self._pending: list[tuple[int, bytes, bytes | None]] = []
        self.broker_ms = 0  # the latest broker stamp (LogAppendTime) of a record read, ms
        self._checked: set[str] = set()  # towns whose journal this process has read
        self.intake_topic: str | None = None  # the topic whose partitions `in_order` follows
        self.consumer: Any = None  # Faust's consumer, to read a partition again (a seek)
        self._next: dict[int, int] = {}  # intake partition -> the next offset to apply
        self._seeking: dict[int, int] = {}  # partition -> the offset it is read again from
        self.ticks: dict[int, datetime] = {}  # partition -> the latest tick of this batch

    # ------------------------------------------------------------- the table, by key

    def _partition_db(self) -> tuple[Any, int]:
        """The local store of the current event's partition (where its town lives)."""
        event = faust_streams._current_event.get()
        partition = event().message.partition  # type: ignore[misc,union-attr]
        return self.table.data._db_for_partition(partition), partition

    def _reader(self, partition: int) -> Any:
        """`_lookup` for the keys of one partition (a town's book reads only its own)."""
        if self.changelog is None:
            return self.table.get
        db = self.table.data._db_for_partition(partition)
        return lambda key: db.get(raw_key(key))

    def _lookup(self, key: str) -> Any:
        """The stored value of `key`: its JSON text in bytes, read from the partition's
        store directly (Faust's table would look twice and decode it), or the value as a
        plain mapping holds it; None when there is none."""
        if self.changelog is None:
            return self.table.get(key)
        db, _ = self._partition_db()
        return db.get(raw_key(key))

    def _get(self, key: str) -> Any:
        stored = self._lookup(key)
        return json.loads(stored) if isinstance(stored, bytes) else stored

    def _put(self, key: str, value: Any) -> None:
        """Store `value` (JSON-compatible, or its JSON text in bytes; None deletes) and
        keep the write for the changelog."""
        if self.changelog is None:
            if isinstance(value, bytes):
                value = json.loads(value)
            if value is None:
                with contextlib.suppress(KeyError):
                    del self.table[key]
            else:
                self.table[key] = value
            return
        db, partition = self._partition_db()
        stored_key = raw_key(key)
        if value is None:
            db.delete(stored_key)
            self._pending.append((partition, stored_key, None))
            return
        if not isinstance(value, bytes):
            value = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        db.put(stored_key, value)
        self._pending.append((partition, stored_key, value))

    # ------------------------------------------------------------- intake offsets

    def stored_offset(self, partition: int) -> int | None:
        """The last intake offset applied in `partition` (`q/<partition>`), or None."""
        key = f"q/{partition}"
        if self.changelog is None:
            stored = self.table.get(key)
        else:
            raw = self.table.data._db_for_partition(partition).get(raw_key(key))
            stored = None if raw is None else json.loads(raw)
        return None if stored is None else int(stored)

    def forget_partitions(self) -> None:
        """Partitions moved: what this process knew of them may be another worker's now
        (another worker may even have died halfway through storing a town's batch)."""
        self._next.clear()
        self._seeking.clear()
        self._checked.clear()

    async def start_offsets(self, assigned: Iterable[TP]) -> dict[TP, int]:
        """Where each assigned intake partition should be read from: right after the last
        offset the state holds as applied, or the log's start for a partition never
        applied. Only a hint to start near the right place: Faust may ask before its
        tables are recovered, so `in_order` checks again against the recovered state."""
        targets: dict[TP, int] = {}
        unknown: list[TP] = []
        for tp in assigned:
            if tp.topic != self.intake_topic:
                continue
            last = self.stored_offset(tp.partition)
            if last is None:
                unknown.append(tp)
            else:
                targets[tp] = last + 1
        if unknown:
            earliest = await self.consumer.earliest_offsets(*unknown)
            targets.update({tp: int(earliest[tp]) for tp in unknown})
        self._next.clear()
        self._seeking.clear()
        return targets

    async def _expected(self, topic: str, partition: int, offset: int) -> int:
        """The next offset to apply in a partition, from the state (records flow only
        once Faust has recovered the tables), or the log's start if none was applied."""
        last = self.stored_offset(partition)
        if last is not None:
            return last + 1
        if self.consumer is None:  # a plain mapping (tests): the first record starts it
            return offset
        earliest = await self.consumer.earliest_offsets(TP(topic, partition))
        return int(earliest[TP(topic, partition)])

    async def in_order(self, events: Sequence[Any]) -> list[Any]:
        """The records of a batch that follow, without a gap, what was applied to their
        partition; records applied before are left out.

        Faust can lose a fetched record when partitions move: it never reaches the agent
        and the group's committed offset passes it (seen in a worker that took a
        partition back from one that left: offset 694 of 670-756 never came). So a
        record past a gap is never applied: its partition is read again from the first
        missing offset, and nothing more of it is applied until that record comes.
        Records fetched before a seek may still arrive after it (and make Faust skip
        the ones read again), so every batch that brings the gap again seeks again."""
        keep: list[Any] = []
        gaps: dict[int, tuple[str, int]] = {}
        for event in events:
            msg = event.message
            partition = msg.partition
            if partition in gaps:
                continue
            expected = self._next.get(partition)
            if expected is None:
                expected = await self._expected(msg.topic, partition, msg.offset)
                self._next[partition] = expected
            if msg.offset < expected:
                continue  # applied before: read again after a seek or a restart
            if msg.offset > expected:
                gaps[partition] = (msg.topic, expected)
                continue
            self._next[partition] = expected + 1
            self._seeking.pop(partition, None)
            keep.append(event)
        for partition, (topic, offset) in gaps.items():
            if self.consumer is None:
                raise RuntimeError(f"partition {partition}: records from {offset} missing")
            if self._seeking.get(partition) != offset:
                log.warning("partition %d: records from offset %d never reached the worker; "
                            "reading them again", partition, offset)  # fmt: skip
            self._seeking[partition] = offset
            await self.consumer.seek_wait({TP(topic, partition): offset})
        return keep

    async def flush(self) -> None:
        """Send what the batch stored to the changelog and wait for every ack; then tell
        the store how far its changelog goes (a restart reads only what follows)."""
        pending, self._pending = self._pending, []
        if not pending or self.changelog is None:
            return
        last = await self.sink.send_raw(self.changelog, pending, self.broker_ms)
        for partition, offset in last.items():
            self.table.data.set_persisted_offset(TP(self.changelog, partition), offset)

    def position(self, town: str) -> int:
        stored = self._get(f"p/{town}")
        return -1 if stored is None else int(stored)

    def check_journal(self, town: str) -> None:
        """The first touch of a town in this process: make the changelog hold the last
        batch whole, or not at all (see the module's docstring)."""
        if town in self._checked:
            return
        self._checked.add(town)
        head = self._get(f"j/{town}")
        if head is None:
            return
        position = self.position(town)
        pages = [self._get(f"j/{town}/{n}") or [] for n in range(int(head["pages"]))]
        if int(head["position"]) > position:
            log.warning("town %s: taking back a batch stored in part (to offset %s)",
                        town, head["position"])  # fmt: skip
            for page in pages:
                for key, before in page:
                    self._put(key, None if before is None else before.encode())
            return
        for page in pages:  # stored: write it again, the changelog may lack part of it
            for key, _ in page:
                self._put(key, self._lookup(key))
        for n, page in enumerate(pages):
            self._put(f"j/{town}/{n}", page)
        self._put(f"j/{town}", head)
        self._put(f"t/{town}", self._lookup(f"t/{town}"))
        self._put(f"p/{town}", position)

    def store(self, book: Book, position: int) -> None:
        town = book.town
        old_head = self._get(f"j/{town}")
        pages = journal_pages([(key, as_text(before)) for key, before in book.before_images()])
        for n, page in enumerate(pages):
            self._put(f"j/{town}/{n}", page)
        for n in range(len(pages), int(old_head["pages"]) if old_head else 0):
            self._put(f"j/{town}/{n}", None)
        self._put(f"j/{town}", {"position": position, "pages": len(pages)})
        for key, value in book.changes(raw=self.changelog is not None):  # the town's last
            self._put(key, value)
        self._put(f"p/{town}", position)  # the batch is stored

    # ------------------------------------------------------------- a batch

    def decide_batch(
        self, events: Sequence[Any]
    ) -> tuple[Mapping[str, Book], dict[str, tuple[Any, int]], list[Output]]:
        books: dict[str, Book] = {}
        positions: dict[str, int] = {}
        applied: dict[str, tuple[Any, int]] = {}  # town -> (event of its partition, offset)
        outputs: list[Output] = []
        for event in events:
            msg = event.message
            try:
                record = recorded_when_claimed(decode(msg.value, recorded_at=_stamp(msg)))
            except RecordError as exc:
                outputs.append(
                    rejected_record(msg.topic, msg.partition, msg.offset, str(exc), msg.value)
                )
                continue
            if isinstance(record, ClockTick):
                concerned = towns_on(msg.partition, self.rules.county.codes(), self.partitions)
                if record.recorded_at is not None:  # the clock is alive (ReliefClockStale)
                    self.ticks[msg.partition] = record.recorded_at
            else:
                key = (msg.key or b"").decode("utf-8", "replace")
                if key != record.town:
                    reason = f"key {key!r} is not the record's town {record.town!r}"
                    outputs.append(
                        rejected_record(msg.topic, msg.partition, msg.offset, reason, msg.value)
                    )
                    continue
                concerned = [record.town]
            # The RocksDB store reads and writes a key in the current event's partition;
            # this record's partition is where its town lives.
            with _current(event):
                for town in concerned:
                    if town not in books:
                        self.check_journal(town)
                        positions[town] = self.position(town)
                        books[town] = Book(town, self._reader(msg.partition))
                    if positions[town] >= msg.offset:
                        continue  # applied before a restart; its outputs went out first
                    verdict = decide(books[town], record, self.rules)
                    outputs.extend(to_output(r) for r in verdict.records)
                    if verdict.refused is not None:
                        outputs.append(
                            rejected_record(
                                msg.topic, msg.partition, msg.offset, verdict.refused, msg.value
                            )
                        )
                    applied[town] = (event, msg.offset)
        return books, applied, outputs

    async def run_batch(self, events: Sequence[Any]) -> None:
        consumed = len(events)
        try:
            events = await self.in_order(events)
        except Exception:
            log.exception("a partition could not be read again; exiting without acknowledging")
            os._exit(EXIT_UNAVAILABLE)
        if not events:
            return
        last_of = {event.message.partition: event for event in events}
        # Everything the batch writes is stamped with the broker's latest time, never this
        # host's clock (docs/design.md "one clock for every deadline"): a host clock an
        # hour ahead would have Kafka 4 refuse every record (its default
        # log.message.timestamp.after.max.ms), and the worker could not send at all.
        self.broker_ms = max(self.broker_ms, *(round(e.message.timestamp * 1000) for e in events))
        self.ticks = {}
        try:
            with metrics.stage_timer("decide"):
                books, applied, outputs = self.decide_batch(events)
        except Exception:
            log.exception("invariant broken while deciding; exiting without acknowledging")
            os._exit(EXIT_BUG)
        try:
            with metrics.stage_timer("send"):
                await self.sink.send_all(outputs, self.broker_ms)
        except Exception:
            # Faust would restart the agent in this process and acknowledge the batch:
            # its records would be skipped for good. Exit instead, unacknowledged.
            log.exception("outputs not acknowledged by Kafka; exiting without acknowledging")
            os._exit(EXIT_UNAVAILABLE)
        try:
            with metrics.stage_timer("store"):
                for town, (event, offset) in applied.items():
                    with _current(event):
                        self.store(books[town], offset)
                for partition, event in last_of.items():  # after its towns' positions
                    with _current(event):
                        self._put(f"q/{partition}", event.message.offset)
            with metrics.stage_timer("flush"):
                await self.flush()
        except Exception:
            log.exception("state not stored; exiting without acknowledging")
            os._exit(EXIT_UNAVAILABLE)
        self.observe(outputs, books, consumed)

    def observe(self, outputs: list[Output], books: Mapping[str, Book], consumed: int) -> None:
        metrics.observe(outputs, books, consumed=consumed, ticks=self.ticks)


@contextlib.contextmanager
def _current(event: Any) -> Iterator[None]:
    """Make `event` Faust's current event *in this task only* (its context variable).

    Faust's tables and RocksDB store find the partition of a key through the current
    event; the stream's own attribute is left alone, since the stream's buffer reads it
    while it waits to add the next record.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


async def finish(batch: Coroutine[Any, Any, None]) -> None:
    """Run a batch to its end even if the agent is cancelled meanwhile (a SIGTERM, a
    worker stopping): Faust acknowledges the batch's records when the agent leaves its
    loop, cancelled or not, so a batch cut short there would be skipped for good. The
    cancellation is passed on once the batch is stored (or the process has exited)."""
    task = asyncio.ensure_future(batch)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


class PositionedConsumer(faust_aiokafka.Consumer):
    """Faust's Kafka consumer, except that after every rebalance it starts each intake
    partition where the processor's own state says it stopped (`Engine.start_offsets`),
    not at the group's committed offset, which Faust can move past records it lost."""

    async def perform_seek(self) -> None:
        await super().perform_seek()
        engine: Engine | None = getattr(self.app.conf, "relief_engine", None)
        if engine is None:
            return
        try:
            targets = await engine.start_offsets(self.assignment())
            if targets:
                await self.seek_wait(targets)
        except Exception:  # only a hint: the first batch of each partition checks again
            log.warning("intake partitions not sought to the state's offsets", exc_info=True)
            engine.forget_partitions()
            return
        for tp, offset in targets.items():
            self._committed_offset[tp] = offset  # what Faust commits follows from here
            self._read_offset[tp] = offset if offset else None


STATE_TABLE = "state"


def data_dir(settings: EmergencySettings) -> Path:
    return settings.emergency_data_dir / settings.emergency_app_id


def new_app(
    settings: EmergencySettings, app_id: str, folder: Path, partitions: int, web_port: int
) -> faust.App:
    """A Faust app as the town processor and the claims stage both run: RocksDB state in
    `folder`, acks from every in-sync replica, state restored from the changelog."""
    folder.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        # TLS / SASL-SCRAM as every other client (RELIEF_KAFKA_*; issue 13)
        broker_credentials=kafka_security.faust_credentials(),
        store="rocksdb://",
        # one folder per app id: a new state format never reads an old one's files
        datadir=str(folder),
        # docs/design.md "Effectively once": Faust's transactional guarantee is
        # experimental; correctness comes from deterministic ids, the ack-before-store
        # order above and the state's own positions.
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        topic_replication_factor=settings.emergency_changelog_replication,
        # No standby copies: a worker that takes a partition over restores its state from
        # the changelog as the partition's active reader, from the start. A standby
        # promoted under load was seen holding the end of a partition's state without its
        # start (three towns' incidents missing, every later request of theirs refused as
        # for an unknown incident: tests/faults/test_worker_added_and_removed.py); the
        # active restore read the whole partition every time. The cost: a takeover replays
        # the partition's compacted changelog (its open cases), not a short catch-up.
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_every=1_000,
        # a worker that died is noticed in seconds, so its partitions move on (or back to
        # it, restarted) quickly; heartbeats go every third of it
        broker_session_timeout=settings.emergency_session_timeout_s,
        broker_heartbeat_interval=settings.emergency_session_timeout_s / 3,
        web_port=web_port,
        web_host="127.0.0.1",
    )


def raw_topic(app: faust.App, name: str, partitions: int) -> Any:
    """A topic read as bytes: the worker decodes records itself (schemas.registry)."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


def build_app(settings: EmergencySettings, rules: Rules, partitions: int) -> faust.App:
    app = new_app(
        settings,
        settings.emergency_app_id,
        data_dir(settings),
        partitions,
        settings.emergency_web_port,
    )
    intake = raw_topic(app, settings.intake_topic, partitions)
    # Keys name what they hold ("t/<town>", "c/<town>/<case>", ... see domain/book.py);
    # values are JSON objects (Faust's json codec) that the domain's models validate.
    # Replicated changelogs are written to two replicas before an ack, like every topic of
    # a cluster (a broker may die without losing an acknowledged batch).
    replicated = settings.emergency_changelog_replication >= 3
    table = app.Table(
        STATE_TABLE,
        partitions=partitions,
        extra_topic_configs={"min.insync.replicas": "2"} if replicated else {},
    )
    sink = OutputSink(
        settings.kafka_bootstrap,
        settings.emergency_output_timeout_s,
        {
            topics.INTAKE: settings.intake_topic,
            topics.DECISIONS: settings.decisions_topic,
            topics.POSTINGS: settings.postings_topic,
            topics.REJECTED: settings.rejected_topic,
            topics.CLAIMS: settings.claims_topic,  # P6 across towns: claims released
        },
    )
    engine = Engine(
        rules, sink, table, partitions, changelog=table.changelog_topic.get_topic_name()
    )
    app.conf.relief_engine = engine  # reachable for the consumer, web views and tests
    engine.intake_topic = settings.intake_topic
    # (on this app's transport only, before the app makes its consumer)
    app.transport.Consumer = PositionedConsumer  # type: ignore[misc]

    async def partitions_moved(sender: Any, *args: Any, **kwargs: Any) -> None:
        engine.forget_partitions()

    app.on_partitions_revoked.connect(partitions_moved)  # type: ignore[arg-type]

    @app.agent(intake)
    async def decide_records(stream: Any) -> None:
        metrics.serve(settings.emergency_metrics_port, rules.county.codes(), settings.metrics_host)
        # aiokafka logs every record it sends at DEBUG (a twentieth of the worker's time)
        quiet = logging.getLogger("aiokafka")
        if quiet.getEffectiveLevel() < logging.INFO:
            quiet.setLevel(logging.INFO)
        engine.consumer = app.consumer
        await sink.start()
        try:
            async for events in stream.take_events(
                settings.emergency_batch_max, within=settings.emergency_batch_within_s
            ):
                await finish(engine.run_batch(events))
        finally:
            await sink.stop()

    return app
