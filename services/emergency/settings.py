"""Settings of the emergency processor, from the environment (prefix RELIEF_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import topics


class EmergencySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELIEF_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    # Faust application id: the consumer group and the prefix of its changelog topics.
    # It names the version of the stored state's format: a worker of a new format starts
    # a new group with new changelogs and replays the intake topic from its start, which
    # re-emits the same decisions and postings (their ids are derived), kept once
    # downstream. v2: state sized by what is open (one key per case, marks, a wheel).
    emergency_app_id: str = "relief-emergency-v2"
    emergency_data_dir: Path = Path(".local/emergency")
    emergency_web_port: int = Field(default=6066, ge=1, le=65535)
    # Prometheus /metrics of the worker (0: off); scraped by deploy/prometheus/
    emergency_metrics_port: int = Field(default=9101, ge=0, le=65535)
    # /metrics listens on loopback unless told otherwise (a scraper on another machine:
    # set RELIEF_METRICS_HOST=0.0.0.0 behind a network policy that admits only it)
    metrics_host: str = "127.0.0.1"
    policy_file: Path | None = None
    # Topic names (the defaults are the service's; tests and staging may prefix their own)
    intake_topic: str = topics.INTAKE
    decisions_topic: str = topics.DECISIONS
    postings_topic: str = topics.POSTINGS
    rejected_topic: str = topics.REJECTED
    partitions: int = Field(default=topics.DEFAULT_PARTITIONS, ge=1, le=1_000)
    # P6 across towns: the county's claims stage (`python -m services.emergency claims`),
    # a Faust app of its own (its group and changelog) on the one-partition claims topic
    claims_topic: str = topics.CLAIMS
    claims_app_id: str = "relief-emergency-claims-v1"
    claims_web_port: int = Field(default=6067, ge=1, le=65535)
    # the stage's /metrics (its batches' stages; 0: off)
    claims_metrics_port: int = Field(default=9104, ge=0, le=65535)
    # Replicas of the processor's changelog topics (3 on a cluster of three brokers);
    # the worker refuses to start when the topics it finds have fewer.
    emergency_changelog_replication: int = Field(default=1, ge=1, le=7)

    # How many intake records are decided together: their outputs are acknowledged by
    # Kafka before the new state is stored, so a batch trades latency for throughput.
    emergency_batch_max: int = Field(default=500, ge=1, le=10_000)
    emergency_batch_within_s: float = Field(default=0.05, gt=0, le=5)
    # How long the group waits for a silent worker before its partitions move on
    emergency_session_timeout_s: float = Field(default=8.0, ge=6, le=300)
    # The clock: one tick into every intake partition this often (docs/design.md "time is an event")
    clock_interval_s: float = Field(default=30.0, gt=0, le=3600)
    # Bounded waits on Kafka acknowledgements of outputs
    emergency_output_timeout_s: float = Field(default=30.0, gt=0, le=600)
