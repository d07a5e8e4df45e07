"""Consumer lag per partition, read from Kafka and from the ledger's stored positions."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from relief_platform import kafka_security
from services.ledger.adapters import postgres
from services.ledger.adapters.metrics import Lag, lags_of

log = logging.getLogger("relief.ledger.lag")
KAFKA_TIMEOUT_MS = 5_000


class LagReader:
    """Keeps one admin client and one group-less consumer; `read` raises when Kafka is away
    (the caller counts that as `relief_kafka_lag_up 0` and tries again later)."""

    def __init__(self, bootstrap: str, streams: Mapping[str, str], emergency_group: str) -> None:
        self.bootstrap = bootstrap
        self.streams = dict(streams)  # logical name -> topic
        self.emergency_group = emergency_group
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            admin = AIOKafkaAdminClient(
                **kafka_security.client_options(),
                bootstrap_servers=self.bootstrap,
                request_timeout_ms=KAFKA_TIMEOUT_MS,
            )
            consumer = AIOKafkaConsumer(
                **kafka_security.client_options(),
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=KAFKA_TIMEOUT_MS,
            )
            try:
                await admin.start()
                await consumer.start()
            except BaseException:
                await self._close(admin, consumer)
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    @staticmethod
    async def _close(admin: AIOKafkaAdminClient | None, consumer: AIOKafkaConsumer | None) -> None:
        try:
            if consumer is not None:
                await consumer.stop()
            if admin is not None:
                await admin.close()
        except Exception:  # closing a broken client: nothing more to do
            log.debug("closing a Kafka client failed", exc_info=True)

    async def close(self) -> None:
        await self._close(self._admin, self._consumer)
        self._admin = self._consumer = None

    async def read(self, pool: postgres.Pool) -> tuple[list[Lag], dict[tuple[str, int], int]]:
        try:
            return await self._read(pool)
        except Exception:
            await self.close()  # start afresh next time
            raise

    async def _read(self, pool: postgres.Pool) -> tuple[list[Lag], dict[tuple[str, int], int]]:
        admin, consumer = await self._clients()
        described = await admin.describe_topics(list(self.streams.values()))
        parts: dict[str, list[int]] = {
            d["topic"]: sorted(p["partition"] for p in d.get("partitions", []))
            for d in described
            if d.get("error_code", 0) == 0
        }
        tps = [TopicPartition(t, p) for t in self.streams.values() for p in parts.get(t, [])]
        ends = await consumer.end_offsets(tps) if tps else {}
        by_stream: dict[str, dict[int, int]] = {}
        end_offsets: dict[tuple[str, int], int] = {}
        for stream, topic in self.streams.items():
            for p in parts.get(topic, []):
                end = int(ends[TopicPartition(topic, p)])
                by_stream.setdefault(stream, {})[p] = end
                end_offsets[(stream, p)] = end
        lags: list[Lag] = []
        postings_topic = self.streams["postings"]
        if "postings" in by_stream:
            stored = await postgres.read_positions(pool, postings_topic, None)
            lags += lags_of("ledger", "postings", by_stream["postings"], stored)
        if "intake" in by_stream:
            committed = await admin.list_consumer_group_offsets(self.emergency_group)
            positions = {
                tp.partition: int(meta.offset)
                for tp, meta in committed.items()
                if tp.topic == self.streams["intake"] and meta.offset >= 0
            }
            lags += lags_of("emergency", "intake", by_stream["intake"], positions)
        return lags, end_offsets
