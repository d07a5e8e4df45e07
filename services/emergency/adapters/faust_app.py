"""The Faust wiring around the pure rules: read intake, decide, emit, remember.

Effectively once without Kafka transactions (DESIGN): the worker runs `at_least_once`,
and for every batch of intake records it

1. decides each record against the town's state (pure: `domain.decide.handle`),
2. sends every output (decisions, postings, dead letters) with an idempotent producer
   and **waits until Kafka has acknowledged them all**,
3. only then stores the towns' new states (RocksDB + changelog), each stamped with the
   offset of the last record applied to it.

A crash before (3) redelivers the batch against the old state: the rules are pure and
every output id is derived from its cause, so the same ids come out again and downstream
stores them once. A crash after (3) redelivers records whose offset the state already
covers: they are skipped, and their outputs were durable before the state was. Nothing is
lost, nothing is decided twice.

A broken invariant is a bug: the worker exits at once *without* acknowledging the batch,
so the source offsets are not committed and the records are decided again after the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import faust
import faust.streams as faust_streams
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.intake import ClockTick
from schemas.registry import RecordError, decode
from services.emergency.adapters import metrics
from services.emergency.adapters.partitions import towns_on
from services.emergency.domain.decide import Output, Rules, handle, rejected_record
from services.emergency.domain.state import TownState
from services.emergency.settings import EmergencySettings

log = logging.getLogger("relief.emergency")

EXIT_BUG = 70  # EX_SOFTWARE: an invariant broke; the supervisor restarts the worker


class OutputSink:
    """An idempotent producer (acks=all) for everything the processor emits."""

    def __init__(self, bootstrap: str, timeout_s: float, topic_names: dict[str, str]) -> None:
        self._bootstrap = bootstrap
        self._topic_names = topic_names  # the service's topic -> the name on this cluster
        self._timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is not None:
            return
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
            request_timeout_ms=int(self._timeout_s * 1000),
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send_all(self, outputs: Sequence[Output]) -> None:
        if not outputs:
            return
        if self._producer is None:
            raise RuntimeError("output sink used before it started")
        futures = [
            await self._producer.send(
                self._topic_names.get(out.topic, out.topic), key=out.key.encode(), value=out.value
            )
            for out in outputs
        ]
        await asyncio.wait_for(asyncio.gather(*futures), self._timeout_s)


def _stamp(message: Any) -> datetime:
    """The broker's LogAppendTime stamp of an intake record: its `recorded_at`."""
    return datetime.fromtimestamp(message.timestamp, UTC)


class Engine:
    """Decides batches of intake events; the only place that touches the table."""

    def __init__(self, rules: Rules, sink: OutputSink, table: Any, partitions: int) -> None:
        self.rules = rules
        self.sink = sink
        self.table = table
        self.partitions = partitions

    def load(self, town: str) -> TownState | None:
        raw = self.table.get(town)
        return None if raw is None else TownState.model_validate(raw)

    def decide_batch(
        self, events: Sequence[Any]
    ) -> tuple[dict[str, TownState], dict[str, Any], list[Output]]:
        working: dict[str, TownState | None] = {}
        source: dict[str, Any] = {}
        outputs: list[Output] = []
        for event in events:
            msg = event.message
            try:
                record = decode(msg.value, recorded_at=_stamp(msg))
            except RecordError as exc:
                outputs.append(
                    rejected_record(msg.topic, msg.partition, msg.offset, str(exc), msg.value)
                )
                continue
            if isinstance(record, ClockTick):
                concerned = towns_on(msg.partition, self.rules.county.codes(), self.partitions)
            else:
                key = (msg.key or b"").decode("utf-8", "replace")
                if key != record.town:
                    reason = f"key {key!r} is not the record's town {record.town!r}"
                    outputs.append(
                        rejected_record(msg.topic, msg.partition, msg.offset, reason, msg.value)
                    )
                    continue
                concerned = [record.town]
            for town in concerned:
                if town in working:
                    state = working[town]
                else:
                    # The RocksDB store reads a key in the current event's partition only;
                    # this record's partition is where its town lives.
                    with _current(event):
                        state = self.load(town)
                if state is not None and state.last_offset >= msg.offset:
                    continue  # applied before a restart; its outputs were acknowledged first
                new_state, outs = handle(
                    state,
                    record,
                    self.rules,
                    offset=msg.offset,
                    partition=msg.partition,
                    raw=msg.value,
                )
                outputs.extend(outs)
                if new_state is not None:
                    working[town] = new_state
                    source[town] = event
        return {t: s for t, s in working.items() if s is not None}, source, outputs

    async def run_batch(self, events: Sequence[Any]) -> None:
        try:
            states, source, outputs = self.decide_batch(events)
        except Exception:
            log.exception("invariant broken while deciding; exiting without acknowledging")
            os._exit(EXIT_BUG)
        await self.sink.send_all(outputs)
        metrics.observe(outputs, states, consumed=len(events))
        for town, state in states.items():
            # A table write goes to the changelog partition of the current event; in a
            # batch spanning partitions, make it an event of the town's own partition.
            with _current(source[town]):
                self.table[town] = state.model_dump(mode="json")


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


def build_app(settings: EmergencySettings, rules: Rules, partitions: int) -> faust.App:
    app = faust.App(
        settings.emergency_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="rocksdb://",
        datadir=str(settings.emergency_data_dir),
        # DESIGN: Faust's exactly_once is experimental; correctness comes from
        # deterministic ids and the ack-before-store order above.
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_every=1_000,
        web_port=settings.emergency_web_port,
        web_host="127.0.0.1",
    )
    intake = app.topic(
        settings.intake_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )
    # Keys are town codes, values the town states as JSON objects (Faust's json codec);
    # the domain's own models validate them on the way back in.
    table = app.Table("towns", partitions=partitions)
    sink = OutputSink(
        settings.kafka_bootstrap,
        settings.emergency_output_timeout_s,
        {
            topics.INTAKE: settings.intake_topic,
            topics.DECISIONS: settings.decisions_topic,
            topics.POSTINGS: settings.postings_topic,
            topics.REJECTED: settings.rejected_topic,
        },
    )
    engine = Engine(rules, sink, table, partitions)
    app.conf.relief_engine = engine  # reachable for the web views and tests

    @app.agent(intake)
    async def decide(stream: Any) -> None:
        metrics.serve(settings.emergency_metrics_port, rules.county.codes())
        await sink.start()
        try:
            async for events in stream.take_events(
                settings.emergency_batch_max, within=settings.emergency_batch_within_s
            ):
                await engine.run_batch(events)
        finally:
            await sink.stop()

    return app
