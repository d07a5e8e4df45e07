"""Composition root of the ledger: settings, the PostgreSQL store, the Kafka consumer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from relief_platform.metrics_access import serve_metrics
from relief_platform.positioned import SHARD_PATTERN, shard_of
from relief_platform.secrets import (
    MIN_SEAL_KEY_BYTES,
    Sealer,
    development_key,
    hex_key,
    secret_or_development,
)
from schemas import topics
from services.ledger.adapters.kafka import LedgerConsumer
from services.ledger.adapters.metrics import LedgerMetrics
from services.ledger.adapters.postgres import LedgerStore, RetryPolicy, connect_pool

log = logging.getLogger("relief.ledger")

# The local stack's and the tests' chain key: derived from a public string, worthless
# outside this machine. Production sets RELIEF_LEDGER_CHAIN_KEY (RELIEF_ENV=production
# refuses to start without it).
DEV_CHAIN_KEY_HEX = development_key("ledger chain")


class LedgerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELIEF_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    # the service role: INSERT and SELECT only (P10)
    database_url: str = "postgresql://relief_app@127.0.0.1:15432/relief"
    # the owner role: runs migrations, owns the tables
    database_owner_url: str = "postgresql://relief_owner@127.0.0.1:15432/relief"
    # granted INSERT, SELECT by `migrate`
    ledger_app_role: str = Field(default="relief_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # The read-only role (dashboard, statements): granted SELECT by `migrate`; empty: none.
    ledger_read_role: str = Field(default="relief_read", pattern=r"^([a-z_][a-z0-9_]{0,62})?$")
    # Hex key (>= 32 bytes) of the seals on every row the writer stores (domain/seals.py).
    # The ledger writer and whoever runs `verify` hold it; no database role does.
    ledger_chain_key: str = Field(default="", repr=False)
    ledger_topic: str = topics.POSTINGS
    ledger_rejected_topic: str = topics.REJECTED

    # Postings per PostgreSQL transaction. One commit per posting would cap the service at
    # ~3k rows/s; a batch commits together with its consumer positions (docs/design.md "batched").
    # "k/n": this consumer stores the partitions p with p % n == k (towns live on one
    # partition each, and each town's chain is its own, so shards never wait on each
    # other); empty: every partition
    ledger_shard: str = Field(default="", pattern=SHARD_PATTERN)
    ledger_batch_max_postings: int = Field(default=2_000, ge=1, le=20_000)

    @field_validator("ledger_shard")
    @classmethod
    def _shard_within_its_count(cls, value: str) -> str:
        shard_of(value)
        return value

    ledger_poll_timeout_ms: int = Field(default=200, ge=1, le=10_000)
    ledger_pool_max: int = Field(default=4, ge=1, le=50)
    # A PostgreSQL restart: bounded retries with backoff, then crash and be restarted.
    ledger_pg_retry_attempts: int = Field(default=12, ge=1, le=100)
    ledger_pg_retry_base_s: float = Field(default=0.2, gt=0, le=10)
    ledger_pg_retry_max_s: float = Field(default=5.0, gt=0, le=60)
    # Tests only: SIGKILL the process right after this many batch commits.
    ledger_crash_after_commits: int | None = Field(default=None, ge=1)
    # /metrics of the consumer (batches, PostgreSQL transaction latency); 0: none
    ledger_metrics_port: int = Field(default=9102, ge=0, le=65535)
    # loopback unless told otherwise (RELIEF_METRICS_HOST=0.0.0.0 behind a network policy)
    metrics_host: str = "127.0.0.1"

    def chain_sealer(self) -> Sealer:
        """The writer's sealer; in production a missing key stops the service."""
        value = secret_or_development(
            "RELIEF_LEDGER_CHAIN_KEY", self.ledger_chain_key, DEV_CHAIN_KEY_HEX
        )
        return Sealer(hex_key("RELIEF_LEDGER_CHAIN_KEY", value, min_bytes=MIN_SEAL_KEY_BYTES))

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts_max=self.ledger_pg_retry_attempts,
            backoff_base_s=self.ledger_pg_retry_base_s,
            backoff_max_s=self.ledger_pg_retry_max_s,
        )


async def run_consumer(settings: LedgerSettings, stop: asyncio.Event | None = None) -> None:
    """Consume postings into PostgreSQL until `stop` is set (or SIGTERM / SIGINT)."""
    sealer = settings.chain_sealer()  # before anything: no key, no start (production)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    pool = await connect_pool(settings.database_url, settings.ledger_pool_max)
    metrics = LedgerMetrics()
    serve_metrics(settings.ledger_metrics_port, settings.metrics_host, metrics.registry, "ledger")
    try:
        consumer = LedgerConsumer(
            LedgerStore(pool, sealer, settings.retry_policy()),
            bootstrap=settings.kafka_bootstrap,
            topic=settings.ledger_topic,
            rejected_topic=settings.ledger_rejected_topic,
            batch_max_postings=settings.ledger_batch_max_postings,
            poll_timeout_ms=settings.ledger_poll_timeout_ms,
            crash_after_commits=settings.ledger_crash_after_commits,
            shard=shard_of(settings.ledger_shard),
            on_batch_stored=metrics.observe_store_batch,
        )
        await consumer.run(stop)
        log.info(
            "stopped: %d stored, %d duplicates, %d alerts, %d rejected",
            consumer.stored,
            consumer.duplicates,
            consumer.alerts,
            consumer.rejected,
        )
    finally:
        await pool.close()
