"""Settings of the finance dashboard (`python -m services.ledger serve`), prefix RELIEF_."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import topics


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELIEF_", extra="ignore")

    # the service role: the dashboard only reads (P10)
    database_url: str = "postgresql://relief_app@127.0.0.1:15432/relief"
    policy_file: Path | None = None  # the county's towns and their reserve sizes
    # "<hex sha-256>" or "<role>:<hex sha-256>" (role finance or county), comma-separated.
    # Only hashes are configured: a leaked configuration does not leak a token.
    dashboard_token_hashes: str = ""
    dashboard_host: str = "127.0.0.1"
    # the sign-in cookie (as the console's): Secure unless the page is reached over plain
    # HTTP on a machine that is not localhost (browsers accept Secure cookies on localhost)
    dashboard_cookie_secure: bool = True
    dashboard_session_s: int = Field(default=8 * 3600, ge=60, le=7 * 86_400)
    # sha256 of the tokens Prometheus may read /metrics with from off this machine
    # (relief_platform.metrics_access); from loopback it needs none
    metrics_token_hashes: str = Field(default="", repr=False)
    dashboard_port: int = Field(default=8090, ge=1, le=65535)
    # A fresh snapshot is read this often; it is pushed only when it changed.
    dashboard_interval_s: float = Field(default=1.0, gt=0, le=60)
    # The hash chains, balances and day figures are verified this often, carrying on from
    # the heads verified last time (what was appended since); at start and on "verify now"
    # every chain from its first entry.
    dashboard_verify_interval_s: float = Field(default=60.0, gt=0, le=86_400)
    # Limits on everything (STYLE): SSE clients at once, rows per list on the page.
    dashboard_max_clients: int = Field(default=100, ge=1, le=10_000)
    dashboard_max_open_cases: int = Field(default=200, ge=1, le=10_000)
    dashboard_max_postings: int = Field(default=20, ge=1, le=500)
    dashboard_pool_max: int = Field(default=4, ge=1, le=50)

    # Open cases and their deadlines come from the casebook (over HTTP, with a service
    # token), as the processor's decisions state them. Empty URL: none are shown.
    casebook_url: str = ""
    casebook_token: str = Field(default="", repr=False)
    casebook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # The casebook's open cases are asked for at most this often: counting them reads every
    # open case (a million in a province's disaster took over a second a read, and reads
    # asked every second piled up); between reads the page shows the last answer.
    dashboard_open_cases_interval_s: float = Field(default=10.0, ge=0, le=600)

    # Consumer lag for /metrics: Kafka end offsets against the ledger's stored positions
    # and the processor's committed group offsets. Empty bootstrap: no lag metrics.
    kafka_bootstrap: str = "127.0.0.1:19092"
    dashboard_lag_interval_s: float = Field(default=5.0, gt=0, le=600)
    emergency_app_id: str = "relief-emergency-v2"  # the processor's consumer group
    intake_topic: str = topics.INTAKE
    decisions_topic: str = topics.DECISIONS
    ledger_topic: str = topics.POSTINGS
    rejected_topic: str = topics.REJECTED

    def streams(self) -> dict[str, str]:
        """logical stream name (a bounded label) -> this cluster's topic name"""
        return {
            "intake": self.intake_topic,
            "decisions": self.decisions_topic,
            "postings": self.ledger_topic,
            "rejected": self.rejected_topic,
        }
