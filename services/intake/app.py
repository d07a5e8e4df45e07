"""The intake HTTP API (/v1), composed: authenticate, validate, authorize, produce, answer.

A write is answered 202 only once Kafka has acknowledged its record (acks=all), with the
broker's LogAppendTime as `recorded_at`. Every refusal (401, 403, 409, 413, 422, 428, 503)
happens before anything is produced, so it leaves no record.

Composition: `create_app(settings, sink=..., reads=..., tokens=...)`; tests pass a real
Kafka sink on their own topic, the server builds everything from settings. The routes are
one router per audience (routes/), the write path is `Intake.submit` (service.py).
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app

from relief_platform import metrics_access
from relief_platform.postgres import connect_pool
from schemas.identity import scrub_ids
from schemas.towns import County, load_county
from services.intake.adapters.idempotency_store import PostgresKeys, purge_every
from services.intake.adapters.kafka import KafkaSink, ProduceUnavailable, RecordSink
from services.intake.adapters.processor import HealthMonitor, OffsetsReader
from services.intake.adapters.reads import HttpReadSource, NoReadSource
from services.intake.adapters.token_file import TokenSource
from services.intake.contract import API_VERSION, Refused
from services.intake.domain import health as health_model
from services.intake.domain import requests as rq
from services.intake.domain.authz import Forbidden
from services.intake.domain.reads import ReadNotAvailable, ReadSource
from services.intake.domain.tokens import TokenTable
from services.intake.middleware import AccessLog, BodyLimit
from services.intake.routes import (
    bulk,
    bureau,
    civil_affairs,
    departments,
    finance,
    operations,
    reads,
    towns,
)
from services.intake.service import Intake
from services.intake.settings import IntakeSettings

log = logging.getLogger("relief.intake.api")

ROUTERS = (
    bureau.router,
    towns.router,
    civil_affairs.router,
    finance.router,
    departments.router,
    bulk.router,
    reads.router,
    operations.router,
)


def create_app(
    settings: IntakeSettings | None = None,
    *,
    sink: RecordSink | None = None,
    reads: ReadSource | None = None,
    tokens: TokenTable | None = None,
    county: County | None = None,
    clock: Callable[[], datetime] | None = None,
    health: HealthMonitor | None = None,
) -> FastAPI:
    settings = settings or IntakeSettings()
    intake = Intake(
        settings,
        _kafka_sink(settings) if sink is None else sink,
        _read_source(settings) if reads is None else reads,
        TokenSource(settings.intake_tokens_file, tokens),
        county or load_county(settings.policy_file),
        clock or (lambda: datetime.now(UTC)),
        _health_monitor(settings) if health is None else health,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = purger = shared = None
        if settings.intake_keys_database_url:
            pool = await connect_pool(
                settings.intake_keys_database_url, settings.intake_keys_pool_max
            )
            shared = PostgresKeys(
                pool,
                retention_s=settings.intake_idempotency_ttl_s,
                claim_s=settings.intake_produce_timeout_s + settings.intake_keys_claim_margin_s,
                wait_s=settings.intake_produce_timeout_s,
            )
            intake.keys = shared
            purger = asyncio.create_task(purge_every(shared, settings.intake_keys_purge_s))
        await intake.sink.start()
        await intake.health.start()
        try:
            yield
        finally:
            await intake.health.stop()
            await intake.sink.stop()
            await intake.reads.close()
            if purger is not None:
                purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purger
            if shared is not None:
                await shared.close()
                intake.keys = intake.memory_keys
            if pool is not None:
                await pool.close()

    app = FastAPI(
        title="Huantai relief intake",
        version=API_VERSION,
        description=(
            "Puts facts into the Huantai county relief service (relief.intake.v1). "
            "Money is integer fen. A write is answered 202 once Kafka has acknowledged it. "
            "Every write needs an Idempotency-Key (428 without one): a retry with the same "
            f"key returns the first answer, for {settings.intake_idempotency_ttl_s / 3600:g} "
            "hours (the keys are kept in PostgreSQL, shared by every instance). A 503 means the "
            "outcome is unknown: retry with the same key after Retry-After."
        ),
        lifespan=lifespan,
        # no OpenTelemetry here (Prometheus is the service's metrics): FastAPI's own check
        # for a configured provider reads the environment on every request
        telemetry=metrics_access.NO_TELEMETRY,
    )
    app.state.intake = intake
    # Prometheus; outside the versioned API; loopback or a metrics token (issue 13)
    app.mount(
        "/metrics",
        metrics_access.Guarded(
            make_asgi_app(), metrics_access.parse_hashes(settings.metrics_token_hashes)
        ),
    )
    _answer_errors(app, str(settings.intake_retry_after_s))
    for router in ROUTERS:
        app.include_router(router)
    # the size limit sits outside the application, so an oversized body is never buffered
    # whole; the access log outside that, so a 413 is counted too
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.intake_max_body_bytes,
        csv_max_bytes=settings.intake_max_csv_bytes,
    )
    app.add_middleware(AccessLog)
    return app


def _answer_errors(app: FastAPI, retry_after: str) -> None:
    """Every refusal as its HTTP answer, with what was wrong where."""

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.detail, **exc.extra}, exc.status, headers=headers)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": exc.reason}, 403)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # loc, msg, type only: pydantic's `input` would echo ID numbers back and into logs
        errors = [
            {
                "loc": list(e.get("loc", ())),
                "msg": scrub_ids(str(e.get("msg", ""))),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, 422)

    @app.exception_handler(rq.RequestInvalid)
    async def _request_invalid(request: Request, exc: rq.RequestInvalid) -> JSONResponse:
        errors = [
            {"loc": list(loc), "msg": scrub_ids(msg), "type": "value_error"}
            for loc, msg in exc.problems
        ]
        return JSONResponse({"detail": errors}, 422)

    @app.exception_handler(ProduceUnavailable)
    async def _unavailable(request: Request, exc: ProduceUnavailable) -> JSONResponse:
        log.warning("produce failed: %s", exc)
        return JSONResponse(
            {
                "detail": f"Kafka did not acknowledge in time ({exc}): the outcome is unknown "
                "(the record may still land). Retry with the same Idempotency-Key after "
                f"{retry_after} s: it is recorded at most once."
            },
            503,
            headers={"Retry-After": retry_after},
        )

    @app.exception_handler(ReadNotAvailable)
    async def _no_reads(request: Request, exc: ReadNotAvailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 503, headers={"Retry-After": retry_after})


def _kafka_sink(settings: IntakeSettings) -> KafkaSink:
    return KafkaSink(
        settings.kafka_bootstrap,
        settings.intake_topic,
        timeout_s=settings.intake_produce_timeout_s,
        request_timeout_ms=settings.intake_kafka_request_timeout_ms,
        linger_ms=settings.intake_linger_ms,
    )


def _read_source(settings: IntakeSettings) -> ReadSource:
    if settings.casebook_url or settings.ledger_url:
        return HttpReadSource(
            casebook_url=settings.casebook_url,
            casebook_token=settings.casebook_token,
            ledger_url=settings.ledger_url,
            ledger_token=settings.ledger_token,
            timeout_s=settings.intake_read_timeout_s,
        )
    return NoReadSource()


def _health_monitor(settings: IntakeSettings) -> HealthMonitor:
    return HealthMonitor(
        OffsetsReader(
            settings.kafka_bootstrap,
            settings.intake_topic,
            settings.emergency_app_id,
            settings.intake_health_timeout_s,
        ),
        health_model.Limits(
            max_lag=settings.intake_health_max_lag, stall_s=settings.intake_health_stall_s
        ),
        settings.intake_health_interval_s,
    )
