"""Settings of the console (`python -m services.console serve`), prefix RELIEF_."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELIEF_", extra="ignore")

    console_host: str = "127.0.0.1"
    console_port: int = Field(default=8060, ge=1, le=65535)
    # intake: every write, and every read a person makes, with the person's own token
    console_intake_url: str = "http://127.0.0.1:8080"
    # the casebook's reads: the public disclosure lists (P7) and the rows of departments'
    # hardship lists (section 二), with the service token
    casebook_url: str = "http://127.0.0.1:8070"
    casebook_token: str = ""
    # finance's dashboard (the ledger): snapshot, verify, statements, with the person's token
    console_dashboard_url: str = "http://127.0.0.1:8090"
    # the dashboard's address as a person's browser reaches it (a link on finance's page)
    console_dashboard_public_url: str = ""
    policy_file: Path | None = None  # the county's towns (default: packaged huantai.toml)
    # the sign-in cookie: Secure unless the console is reached over plain HTTP on a
    # machine that is not localhost (browsers accept Secure cookies on localhost)
    console_cookie_secure: bool = True
    console_session_s: int = Field(default=12 * 3600, ge=60, le=7 * 24 * 3600)
    console_upstream_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # how long who a token belongs to is remembered (a revoked token stops working
    # within this long; intake refuses it at once on every write and read anyway)
    console_principal_ttl_s: float = Field(default=30.0, ge=0, le=3_600)
    console_principal_cache_max: int = Field(default=10_000, ge=1, le=1_000_000)
