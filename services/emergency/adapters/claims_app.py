"""The county's claims stage as a Faust app: P6 across towns (docs/design.md "one
household, many towns"; the rules: domain/claims.py).

It reads the one-partition claims topic - requests as intake wrote them, and the releases
the towns' processor sends back - and forwards each request, with its claim, to the
intake topic keyed by its town. It is the town engine (`faust_app.Engine`) with another
`decide_batch`, so it stores and recovers exactly as the towns do:

- every forward and dead letter of a batch is acknowledged by Kafka before the batch's
  new marks are stored (a crash before the store decides the batch again against the same
  marks: the same claims, the same bytes, forwarded again; the town keeps a request once
  by its case and event id, `decide._request`, so a second forward grants nothing);
- the marks, a journal of the batch and the stage's position (`p/county`, and `q/0` for
  the partition) are stored and sent to the changelog in one burst, and a half-stored
  batch is taken back or written again whole on the next start (`Engine.check_journal`);
- a record past a gap in the partition is never applied: it is read again from the first
  missing offset (`Engine.in_order`), and after every rebalance reading starts where the
  state says it stopped (`PositionedConsumer`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import faust

from schemas import topics
from schemas.claims import InvalidClaimRecord, decode_release
from schemas.intake import ReliefRequested
from schemas.registry import RecordError, UnknownRecordType, decode, encode
from services.emergency.adapters import metrics
from services.emergency.adapters.faust_app import (
    Engine,
    OutputSink,
    PositionedConsumer,
    _current,
    _stamp,
    finish,
    new_app,
    raw_topic,
)
from services.emergency.adapters.outputs import Output, rejected_record
from services.emergency.domain import claims
from services.emergency.domain.book import Book
from services.emergency.domain.decide import Refuse, Rules
from services.emergency.settings import EmergencySettings

log = logging.getLogger("relief.claims")

CLAIMS_TABLE = "claims"


class ClaimsEngine(Engine):
    """Claims one batch of the claims topic against the county's marks."""

    def decide_batch(
        self, events: Sequence[Any]
    ) -> tuple[Mapping[str, Book], dict[str, tuple[Any, int]], list[Output]]:
        book: claims.ClaimsBook | None = None
        position = -1
        applied: dict[str, tuple[Any, int]] = {}
        outputs: list[Output] = []
        for event in events:
            msg = event.message
            with _current(event):
                if book is None:
                    self.check_journal(claims.COUNTY)
                    position = self.position(claims.COUNTY)
                    book = claims.ClaimsBook(self._reader(msg.partition))
                if position >= msg.offset:
                    continue  # applied before a restart; its forward went out first
                outputs.extend(self.claim_one(book, msg))
                applied[claims.COUNTY] = (event, msg.offset)
        return ({claims.COUNTY: book} if book is not None else {}), applied, outputs

    def claim_one(self, book: claims.ClaimsBook, msg: Any) -> list[Output]:
        """One record of the claims topic: a request forwarded with its claim, a release
        applied, or a dead letter (nothing changed)."""
        at = _stamp(msg)
        try:
            record = decode(msg.value, recorded_at=at)
        except UnknownRecordType:
            try:
                released = decode_release(msg.value)
            except InvalidClaimRecord as exc:
                return [rejected_record(msg.topic, msg.partition, msg.offset, str(exc), msg.value)]
            claims.release(book, released, at)
            return []
        except RecordError as exc:
            return [rejected_record(msg.topic, msg.partition, msg.offset, str(exc), msg.value)]
        if not isinstance(record, ReliefRequested):
            reason = f"the claims topic takes requests and releases, not {record.type} records"
            return [rejected_record(msg.topic, msg.partition, msg.offset, reason, msg.value)]
        book.begin()
        try:
            claim = claims.check(book, record, self.rules.county)
        except Refuse as exc:
            book.rollback()
            reason = f"{record.type} for case {record.correlation_id!r}: {exc}"
            return [rejected_record(msg.topic, msg.partition, msg.offset, reason, msg.value)]
        book.commit()
        forward = claims.forwarded(record, claim)
        return [Output(topics.INTAKE, record.town, encode(forward), forward)]

    def observe(self, outputs: list[Output], books: Mapping[str, Book], consumed: int) -> None:
        pass  # (the stage exports its batches' stages; its lag is its consumer group's)


def build_claims_app(settings: EmergencySettings, rules: Rules) -> faust.App:
    app = new_app(
        settings,
        settings.claims_app_id,
        settings.emergency_data_dir / settings.claims_app_id,
        1,  # one partition, keyed by county: claims are serialised
        settings.claims_web_port,
    )
    source = raw_topic(app, settings.claims_topic, 1)
    replicated = settings.emergency_changelog_replication >= 3
    table = app.Table(
        CLAIMS_TABLE,
        partitions=1,
        extra_topic_configs={"min.insync.replicas": "2"} if replicated else {},
    )
    sink = OutputSink(
        settings.kafka_bootstrap,
        settings.emergency_output_timeout_s,
        {topics.INTAKE: settings.intake_topic, topics.REJECTED: settings.rejected_topic},
    )
    engine = ClaimsEngine(rules, sink, table, 1, changelog=table.changelog_topic.get_topic_name())
    app.conf.relief_engine = engine
    engine.intake_topic = settings.claims_topic  # the topic whose positions it keeps
    app.transport.Consumer = PositionedConsumer  # type: ignore[misc]

    async def partitions_moved(sender: Any, *args: Any, **kwargs: Any) -> None:
        engine.forget_partitions()

    app.on_partitions_revoked.connect(partitions_moved)  # type: ignore[arg-type]

    @app.agent(source)
    async def claim_requests(stream: Any) -> None:
        metrics.serve(settings.claims_metrics_port, (), settings.metrics_host)
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
