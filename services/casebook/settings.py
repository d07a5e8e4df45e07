"""Settings of the casebook (`python -m services.casebook ...`), prefix RELIEF_.
Every limit is named here (STYLE "a limit on everything")."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from relief_platform.positioned import SHARD_PATTERN, shard_of
from relief_platform.secrets import (
    MIN_SEAL_KEY_BYTES,
    Sealer,
    development_key,
    hex_key,
    secret_or_development,
)
from schemas import topics

# The local stack's and the tests' seal key (public, worthless elsewhere); production sets
# RELIEF_CASEBOOK_SEAL_KEY and refuses to start without it.
DEV_SEAL_KEY_HEX = development_key("casebook seal")


class CasebookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELIEF_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    # the service role: writes the casebook's own schema, nothing else
    database_url: str = "postgresql://relief_app@127.0.0.1:15432/relief"
    # the owner role: creates the schema and runs the migrations
    database_owner_url: str = "postgresql://relief_owner@127.0.0.1:15432/relief"
    casebook_app_role: str = Field(default="relief_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # The read-only role (the HTTP reads): granted SELECT by `migrate`; empty: none.
    casebook_read_role: str = Field(default="relief_read", pattern=r"^([a-z_][a-z0-9_]{0,62})?$")
    # Hex key (>= 32 bytes) of the seal on every decision the writer stores; the writer and
    # `verify` hold it, no database role does.
    casebook_seal_key: str = Field(default="", repr=False)

    intake_topic: str = Field(default=topics.INTAKE, min_length=1, max_length=249)
    decisions_topic: str = Field(default=topics.DECISIONS, min_length=1, max_length=249)
    rejected_topic: str = Field(default=topics.REJECTED, min_length=1, max_length=249)
    # the processor's consumer group on the intake topic: how far it has got tells a
    # submission that decided nothing (an incident reported) from one not read yet
    emergency_app_id: str = Field(default="relief-emergency-v2", min_length=1, max_length=249)

    # Records per PostgreSQL transaction, with the positions (docs/design.md "batched").
    casebook_batch_max: int = Field(default=5_000, ge=1, le=50_000)
    casebook_poll_timeout_ms: int = Field(default=200, ge=1, le=10_000)
    # "k/n": this consumer folds the partitions p with p % n == k of each topic (a town's
    # records are on one partition number of each, so shards never write the same rows;
    # the topics must have one partition count); empty: every partition
    casebook_shard: str = Field(default="", pattern=SHARD_PATTERN)

    @field_validator("casebook_shard")
    @classmethod
    def _shard_within_its_count(cls, value: str) -> str:
        shard_of(value)
        return value

    casebook_pool_max: int = Field(default=4, ge=1, le=50)
    # A PostgreSQL restart: bounded retries with backoff, then crash and be restarted.
    casebook_pg_retry_attempts: int = Field(default=12, ge=1, le=100)
    casebook_pg_retry_base_s: float = Field(default=0.2, gt=0, le=10)
    casebook_pg_retry_max_s: float = Field(default=5.0, gt=0, le=60)
    # How often the processor's committed offsets are looked at (0: never; then a
    # submission that decides nothing stays pending).
    casebook_progress_interval_s: float = Field(default=2.0, ge=0, le=600)
    casebook_kafka_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # /metrics of the consumer; 0: none
    casebook_metrics_port: int = Field(default=9103, ge=0, le=65535)
    # loopback unless told otherwise (RELIEF_METRICS_HOST=0.0.0.0 behind a network policy)
    metrics_host: str = "127.0.0.1"

    # The HTTP reads (`serve`)
    casebook_host: str = "127.0.0.1"
    casebook_port: int = Field(default=8070, ge=1, le=65535)
    # SHA-256 hex digests of the tokens of the services that read (intake, the finance
    # dashboard), comma-separated. Only hashes are configured; empty: every read is 401.
    casebook_token_hashes: str = ""
    # sha256 of the tokens Prometheus may read the reads' /metrics with from off this
    # machine (relief_platform.metrics_access); from loopback it needs none
    metrics_token_hashes: str = Field(default="", repr=False)
    casebook_read_pool_max: int = Field(default=8, ge=1, le=100)
    casebook_retry_after_s: int = Field(default=5, ge=1, le=3_600)

    # P7: the county's towns and `disclosure_working_days` (default: packaged huantai.toml),
    # and the working-day calendar (default: packaged workdays-cn.toml)
    policy_file: Path | None = None
    workdays_file: Path | None = None
    # How often the unpublished-and-overdue gauge is recomputed (0: never)
    casebook_disclosure_interval_s: float = Field(default=60.0, ge=0, le=3_600)

    def seal_sealer(self) -> Sealer:
        value = secret_or_development(
            "RELIEF_CASEBOOK_SEAL_KEY", self.casebook_seal_key, DEV_SEAL_KEY_HEX
        )
        return Sealer(hex_key("RELIEF_CASEBOOK_SEAL_KEY", value, min_bytes=MIN_SEAL_KEY_BYTES))

    def topic_names(self) -> tuple[str, str, str]:
        return (self.intake_topic, self.decisions_topic, self.rejected_topic)
