"""Settings of the intake API (`python -m services.intake serve`), from the environment
(prefix RELIEF_). Every limit is named here (STYLE "a limit on everything")."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from relief_platform.secrets import secret_or_development
from schemas import topics
from schemas.identity import MIN_KEY_BYTES

log = logging.getLogger("relief.intake")

# A key for the local stack and tests only: household refs made with it are worthless
# outside this machine. Production sets RELIEF_ID_HASH_KEY (docs/design.md "personal data").
# hex of "dev-only-key-not-for-prod"
DEV_ID_HASH_KEY_HEX = "6465762d6f6e6c792d6b65792d6e6f742d666f722d70726f64"


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELIEF_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    # The default is the service's topic; tests and staging give their own.
    intake_topic: str = Field(default=topics.INTAKE, min_length=1, max_length=249)
    policy_file: Path | None = None  # the county's towns (default: packaged huantai.toml)
    # Token hashes -> role, organisation, town (TOML or JSON); see domain/tokens.py.
    intake_tokens_file: Path | None = None
    # Hex HMAC key turning resident ID numbers into household refs; empty: the dev key.
    id_hash_key: str = ""
    # The read side, over HTTP with a service token: cases, deadlines and submissions from
    # the casebook, reserves from the ledger. Empty URL: those reads answer 503.
    casebook_url: str = ""
    casebook_token: str = Field(default="", repr=False)
    ledger_url: str = ""
    ledger_token: str = Field(default="", repr=False)
    intake_read_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # sha256 of the tokens Prometheus may read /metrics with from off this machine
    # (relief_platform.metrics_access); from loopback it needs none
    metrics_token_hashes: str = Field(default="", repr=False)

    # Bounded waits: a produce not acknowledged within this is answered 503 + Retry-After.
    intake_produce_timeout_s: float = Field(default=10.0, gt=0, le=120)
    intake_retry_after_s: int = Field(default=5, ge=1, le=3_600)
    intake_kafka_request_timeout_ms: int = Field(default=10_000, ge=1_000, le=120_000)
    intake_linger_ms: int = Field(default=2, ge=0, le=1_000)

    # Request bodies: JSON commands (an incident with 5,000 households is about 120 KB),
    # and bulk CSV (5,000 rows, MAX_HARDSHIP_ROWS).
    intake_max_body_bytes: int = Field(default=256 * 1024, ge=1_024, le=8 * 1024 * 1024)
    intake_max_csv_bytes: int = Field(default=2 * 1024 * 1024, ge=1_024, le=16 * 1024 * 1024)

    # Bulk intake (POST /v1/bulk, NDJSON): the body is read as it arrives, never whole.
    # A line longer than this is answered 413 (the largest single body fits: an incident
    # with 5,000 households is about 120 KB); lines are checked, claimed and produced in
    # batches of at most this many lines (or bytes), with this many batches waiting for
    # Kafka at once: memory is bounded by about (in flight + 1) x batch bytes.
    intake_bulk_max_line_bytes: int = Field(default=256 * 1024, ge=1_024, le=1_048_576)
    intake_bulk_batch_lines: int = Field(default=1_000, ge=1, le=10_000)
    intake_bulk_batch_bytes: int = Field(default=1_048_576, ge=1_024, le=16 * 1_048_576)
    intake_bulk_batches_in_flight: int = Field(default=4, ge=1, le=64)

    # Every write needs an Idempotency-Key (428 without one); a retry with it returns the
    # first answer for intake_idempotency_ttl_s (the retention stated in the API's
    # description), then the key is removed.
    intake_require_idempotency_key: bool = True
    intake_idempotency_ttl_s: float = Field(default=24 * 3600.0, gt=0, le=7 * 24 * 3600)
    # Where the keys live: PostgreSQL as the service role (schema `intake`, created by
    # `python -m services.intake migrate`), shared by every instance and kept across
    # restarts. Empty: this process's memory (one instance, development; production
    # refuses to start without it).
    intake_keys_database_url: str = Field(default="", repr=False)
    intake_keys_pool_max: int = Field(default=8, ge=1, le=100)
    # a claim outlives the produce timeout by this much before another instance may take
    # it over (its holder died between claim and answer)
    intake_keys_claim_margin_s: float = Field(default=5.0, gt=0, le=600)
    intake_keys_purge_s: float = Field(default=600.0, gt=0, le=86_400)
    # the in-process store (no database): bounded in entries
    intake_idempotency_max_entries: int = Field(default=100_000, ge=1, le=10_000_000)

    # /healthz: is the processor consuming what intake accepts? Its consumer group is the
    # processor's Faust app id (the same setting the processor reads).
    emergency_app_id: str = Field(default="relief-emergency-v2", min_length=1, max_length=249)
    # Read from Kafka in the background this often, never per request; each call bounded.
    intake_health_interval_s: float = Field(default=5.0, gt=0, le=300)
    intake_health_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Degraded when more than this many records wait and the group's committed offsets
    # have not advanced for intake_health_stall_s. The clock ticks into every partition
    # every 30 s, so the stall window must be longer than that; a worker commits every
    # few seconds.
    intake_health_max_lag: int = Field(default=0, ge=0, le=1_000_000_000)
    intake_health_stall_s: float = Field(default=60.0, gt=0, le=86_400)

    @field_validator("id_hash_key")
    @classmethod
    def _hex_key(cls, value: str) -> str:
        if not value:
            return value
        try:
            key = bytes.fromhex(value)
        except ValueError as exc:
            raise ValueError("RELIEF_ID_HASH_KEY must be hex") from exc
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"RELIEF_ID_HASH_KEY must be at least {MIN_KEY_BYTES} bytes")
        return value

    def hash_key(self) -> bytes:
        """The household-ref key; outside production the dev key (with a warning) when none
        is configured; with RELIEF_ENV=production a MissingSecretError: with the dev key,
        committed here, the refs of people born in the county reverse in minutes."""
        value = secret_or_development("RELIEF_ID_HASH_KEY", self.id_hash_key, DEV_ID_HASH_KEY_HEX)
        return bytes.fromhex(value)
