"""The intake HTTP API (/v1): authenticate, validate, authorize, produce, answer.

A write is answered 202 only once Kafka has acknowledged its record (acks=all), with the
broker's LogAppendTime as `recorded_at`. Every refusal (401, 403, 409, 413, 422, 503)
happens before anything is produced, so it leaves no record.

Composition: `create_app(settings, sink=..., reads=..., tokens=...)`; tests pass a real
Kafka sink on their own topic, the server builds everything from settings.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter, Histogram, make_asgi_app
from pydantic import BaseModel, ConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relief_platform import metrics_access
from relief_platform.postgres import connect_pool
from schemas.decisions import CaseStatus
from schemas.envelope import Record
from schemas.identity import scrub_ids
from schemas.intake import DISCLOSURE_PERIOD_PATTERN, MAX_HARDSHIP_ROWS, ReliefRequested
from schemas.registry import encode
from schemas.topics import CLAIMS_KEY
from schemas.towns import County, load_county
from services.intake.adapters.idempotency_store import (
    Answered,
    KeyBusy,
    PostgresKeys,
    purge_every,
)
from services.intake.adapters.kafka import Ack, KafkaSink, ProduceUnavailable, RecordSink
from services.intake.adapters.processor import HealthMonitor, OffsetsReader
from services.intake.adapters.reads import HttpReadSource, NoReadSource
from services.intake.domain import health as health_model
from services.intake.domain import requests as rq
from services.intake.domain.authz import (
    Action,
    Decision,
    may,
    may_for_town,
    may_list_cases,
    may_register,
    submission_scope,
)
from services.intake.domain.hardship_csv import (
    CsvRefused,
    RowReport,
    decode_upload,
    records_for,
    validate_rows,
)
from services.intake.domain.idempotency import (
    KEY_PATTERN,
    MAX_KEY_CHARS,
    Answer,
    Fingerprint,
    IdempotencyCache,
    event_id_for,
)
from services.intake.domain.reads import (
    MAX_CASE_LIST,
    CaseList,
    CaseView,
    DeadlineView,
    ReadNotAvailable,
    ReadScope,
    ReadSource,
    ReserveView,
    SubmissionView,
)
from services.intake.domain.tokens import (
    Principal,
    TokenConfigError,
    TokenTable,
    parse_tokens,
)
from services.intake.settings import IntakeSettings

log = logging.getLogger("relief.intake.api")
access_log = logging.getLogger("relief.intake.access")

API_VERSION = "1.0.0"
HARDSHIP_PATH = "/v1/hardship-lists"
BULK_PATH = "/v1/bulk"  # services/intake/bulk_api.py
CASE_ID = r"^[0-9A-Za-z_.:\-]+$"
# How often the tokens file is checked for changes (`relief token add` needs no restart).
TOKENS_RECHECK_S = 2.0


# ---------------------------------------------------------------- answers


class Accepted(BaseModel):
    """Kafka acknowledged the record: where it is and when the broker stamped it."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID
    type: str
    town: str
    correlation_id: str
    topic: str
    partition: int
    offset: int
    recorded_at: datetime | None


class HardshipAccepted(BaseModel):
    model_config = ConfigDict(frozen=True)

    accepted: int
    rejected: int
    rows: list[RowReport]
    records: list[Accepted]


class Problem(BaseModel):
    detail: str


class Me(BaseModel):
    """Who a token belongs to: what a page needs to show its holder the right things."""

    model_config = ConfigDict(frozen=True)

    role: str
    org: str
    town: str | None


class Live(BaseModel):
    status: Literal["ok"]


class Conflict(BaseModel):
    detail: str
    differing_fields: list[str]


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Invalid(BaseModel):
    detail: list[FieldError]


class CsvInvalid(BaseModel):
    detail: str
    accepted: int
    rejected: int
    rows: list[RowReport]


_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no valid bearer token"},
    403: {"model": Problem, "description": "role or town may not do this"},
    413: {"model": Problem, "description": "body over the size limit"},
    422: {"model": Invalid, "description": "invalid input: the JSON path of each error"},
    503: {"model": Problem, "description": "Kafka (or the read side) unavailable; Retry-After"},
}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_REFUSALS,
    409: {
        "model": Conflict,
        "description": "Idempotency-Key reused with a different body, or still being recorded",
    },
    428: {"model": Problem, "description": "no Idempotency-Key: every write needs one"},
    503: {
        "model": Problem,
        "description": "the outcome is unknown (Kafka did not acknowledge in time): retry "
        "with the same Idempotency-Key after Retry-After; it is recorded at most once",
    },
}
READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    k: v for k, v in _REFUSALS.items() if k != 413
} | {404: {"model": Problem, "description": "not found"}}


class Refused(Exception):
    """An HTTP refusal with a reason (401, 403, 404, 409, 413)."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


# ---------------------------------------------------------------- tokens


class TokenSource:
    """The tokens file, re-read when it changes; a missing file means no tokens (all 401)."""

    def __init__(self, path: Path | None, fixed: TokenTable | None = None) -> None:
        self.path = path
        self._table = fixed or TokenTable({})
        self._fixed = fixed is not None
        self._mtime_ns: int | None = None
        self._checked_s = 0.0
        if not self._fixed:
            self._reload(force=True)

    def _reload(self, force: bool = False) -> None:
        if self.path is None:
            if force:
                log.warning("RELIEF_INTAKE_TOKENS_FILE is not set: every request will be 401")
            return
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            if force:
                log.warning("tokens file %s not found: every request will be 401", self.path)
            self._table, self._mtime_ns = TokenTable({}), None
            return
        if mtime == self._mtime_ns and not force:
            return
        fmt = "json" if self.path.suffix.lower() == ".json" else "toml"
        try:
            table = TokenTable(parse_tokens(self.path.read_text("utf-8"), fmt))
        except (TokenConfigError, OSError, UnicodeDecodeError) as exc:
            # keep the tokens we had: a half-written file must not lock everyone out
            log.error("tokens file %s not loaded: %s", self.path, exc)
            return
        self._table, self._mtime_ns = table, mtime
        log.info("tokens file %s: %d tokens", self.path, len(table))

    def table(self) -> TokenTable:
        if not self._fixed:
            now = time.monotonic()
            if now - self._checked_s >= TOKENS_RECHECK_S:
                self._checked_s = now
                self._reload()
        return self._table


# ---------------------------------------------------------------- body limit, access log


class AccessLog:
    """Access log and request metrics, as plain ASGI (no response buffering in between)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what a crash before the response start amounts to

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            elapsed_s = time.perf_counter() - started
            # the route's template, never the path: case ids stay out of metric labels
            route = getattr(scope.get("route"), "path", "unmatched")
            method = str(scope.get("method", "?"))
            REQUESTS.labels(route, method, str(status)).inc()
            LATENCY.labels(route, method).observe(elapsed_s)
            # paths may carry caller text: masked like everything else that is logged
            access_log.info(
                "%s %s %s %.1fms",
                method,
                scrub_ids(str(scope.get("path", ""))),
                status,
                elapsed_s * 1000,
            )


class BodyLimit:
    """413 for a body over the limit, before the app sees any of it (bounded memory)."""

    def __init__(self, app: ASGIApp, max_bytes: int, csv_max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.csv_max_bytes = csv_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == BULK_PATH:
            # read line by line as it arrives, each line bounded (bulk_api.py)
            await self.app(scope, receive, send)
            return
        limit = self.csv_max_bytes if scope["path"] == HARDSHIP_PATH else self.max_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send, limit: int) -> None:
    body = Problem(detail=f"request body over {limit} bytes").model_dump_json().encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- the app


class Intake:
    """The app's state: settings, county, sink, reads, tokens, idempotency cache."""

    def __init__(
        self,
        settings: IntakeSettings,
        sink: RecordSink,
        reads: ReadSource,
        tokens: TokenSource,
        county: County,
        clock: Callable[[], datetime],
        health: HealthMonitor,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.reads = reads
        self.health = health
        self.tokens = tokens
        self.county = county
        self.clock = clock
        self.hash_key = settings.hash_key()
        self.cache = IdempotencyCache(
            settings.intake_idempotency_max_entries, settings.intake_idempotency_ttl_s
        )
        self._inflight: dict[tuple[str, str], asyncio.Event] = {}
        # the keys every instance shares (PostgreSQL); None: this process's cache only
        self.keys: PostgresKeys | None = None

    # -------------------------------------------------------- the write path

    async def write(
        self,
        principal: Principal,
        key: str | None,
        operation: str,
        body: Any,
        produce: Callable[[uuid.UUID, datetime], Awaitable[Answer]],
    ) -> JSONResponse:
        """Idempotency around `produce` (which validates, maps and sends)."""
        if key is None:
            if self.settings.intake_require_idempotency_key:
                raise Refused(
                    428,
                    "every write needs an Idempotency-Key header (any unique string, e.g. a "
                    "UUID): a retry with the same key is then recorded at most once",
                )
            answer = await produce(uuid.uuid4(), self.clock())
            return JSONResponse(answer.body, status_code=answer.status)
        fingerprint = Fingerprint.of(operation, body, self.hash_key)
        if self.keys is not None:
            return await self._write_shared(self.keys, principal, key, operation, body, produce)
        slot = (principal.org, key)
        # one request per key at a time: a concurrent retry waits for the first answer
        while (event := self._inflight.get(slot)) is not None:
            await event.wait()
        first = self.cache.get(principal.org, key, time.monotonic())
        if first is not None:
            return self._replay(first.fingerprint, fingerprint, first.answer)
        event = asyncio.Event()
        self._inflight[slot] = event
        try:
            town = body.get("town") if isinstance(body, Mapping) else None
            event_id = event_id_for(operation, town, principal.org, key)
            answer = await produce(event_id, self.clock())
            if 200 <= answer.status < 300:  # only what Kafka acknowledged is remembered
                self.cache.put(principal.org, key, fingerprint, answer, time.monotonic())
            return JSONResponse(answer.body, status_code=answer.status)
        finally:
            del self._inflight[slot]
            event.set()

    async def _write_shared(
        self,
        keys: PostgresKeys,
        principal: Principal,
        key: str,
        operation: str,
        body: Any,
        produce: Callable[[uuid.UUID, datetime], Awaitable[Answer]],
    ) -> JSONResponse:
        """The same, with the key claimed in PostgreSQL: every instance sees it."""
        fingerprint = Fingerprint.of(operation, body, self.hash_key)
        try:
            found = await keys.claim(principal.org, key, fingerprint)
        except KeyBusy:
            raise Refused(
                409,
                "a request with this Idempotency-Key is still being recorded; retry with the "
                f"same key after {self.settings.intake_retry_after_s} s",
                retry_after_s=self.settings.intake_retry_after_s,
            ) from None
        if isinstance(found, Answered):
            return self._replay(found.fingerprint, fingerprint, found.answer)
        completed = False
        try:
            town = body.get("town") if isinstance(body, Mapping) else None
            event_id = event_id_for(operation, town, principal.org, key)
            answer = await produce(event_id, self.clock())
            if 200 <= answer.status < 300:  # only what Kafka acknowledged is kept
                await keys.complete(principal.org, key, answer)
                completed = True
            return JSONResponse(answer.body, status_code=answer.status)
        finally:
            if not completed:
                # refused, or the outcome unknown: the retry claims the key again and
                # produces under the same event id, which the processor applies once
                await keys.release(principal.org, key)

    @staticmethod
    def _replay(first: Fingerprint, now: Fingerprint, answer: Answer) -> JSONResponse:
        differing = first.differing(now)
        if differing:
            raise Refused(
                409,
                "Idempotency-Key already used with a different request: " + ", ".join(differing),
                differing_fields=differing,
            )
        return JSONResponse(
            answer.body, status_code=answer.status, headers={"Idempotent-Replayed": "true"}
        )

    def place(
        self, principal: Principal, action: Action, town: str, loc: rq.Loc = ("body", "town")
    ) -> None:
        """422 for a town the county does not have, then 403 unless the principal may act
        there (a town only for itself)."""
        rq.check_town(self.county, town, loc)
        _check(may_for_town(principal, action, town))

    def stamp(self, principal: Principal, event_id: uuid.UUID, now: datetime) -> rq.Stamp:
        return rq.Stamp(event_id, now, principal.actor, self.hash_key, self.county)

    def route(self, record: Record) -> tuple[bytes, bytes, str | None]:
        """(key, value, topic) of a record; topic None: the intake topic. Both the
        single and the bulk path send through it."""
        claims = self.settings.claims_topic_in_use()
        if claims is not None and isinstance(record, ReliefRequested):
            # P6 across towns: every request for relief passes the county's claims stage,
            # which forwards it to the town (docs/design.md "one household, many towns")
            return CLAIMS_KEY.encode(), encode(record), claims
        return record.town.encode("utf-8"), encode(record), None

    async def send(self, record: Record) -> Ack:
        key, value, topic = self.route(record)
        return await self.sink.send(key, value, topic=topic)

    async def send_one(self, record: Record) -> Answer:
        ack = await self.send(record)
        return Answer(202, accepted(record, ack).model_dump(mode="json"))


def accepted(record: Record, ack: Ack) -> Accepted:
    return Accepted(
        event_id=record.event_id,
        type=record.type,
        town=record.town,
        correlation_id=record.correlation_id,
        topic=ack.topic,
        partition=ack.partition,
        offset=ack.offset,
        recorded_at=ack.recorded_at,
    )


def _check(decision: Decision) -> None:
    if not decision.allowed:
        raise Refused(403, decision.reason)


# Pipeline metrics (bounded labels: route templates, methods, status codes)
REQUESTS = Counter(
    "relief_intake_requests_total", "intake HTTP requests", ["route", "method", "status"]
)
LATENCY = Histogram(
    "relief_intake_request_seconds",
    "intake HTTP request latency, including the wait for Kafka's acknowledgement",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
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
    if sink is None:
        sink = KafkaSink(
            settings.kafka_bootstrap,
            settings.intake_topic,
            timeout_s=settings.intake_produce_timeout_s,
            request_timeout_ms=settings.intake_kafka_request_timeout_ms,
            linger_ms=settings.intake_linger_ms,
        )
    if reads is None:
        reads = (
            HttpReadSource(
                casebook_url=settings.casebook_url,
                casebook_token=settings.casebook_token,
                ledger_url=settings.ledger_url,
                ledger_token=settings.ledger_token,
                timeout_s=settings.intake_read_timeout_s,
            )
            if settings.casebook_url or settings.ledger_url
            else NoReadSource()
        )
    if health is None:
        health = HealthMonitor(
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
    intake = Intake(
        settings,
        sink,
        reads,
        TokenSource(settings.intake_tokens_file, tokens),
        county or load_county(settings.policy_file),
        clock or (lambda: datetime.now(UTC)),
        health,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = purger = None
        if settings.intake_keys_database_url:
            pool = await connect_pool(
                settings.intake_keys_database_url, settings.intake_keys_pool_max
            )
            intake.keys = PostgresKeys(
                pool,
                retention_s=settings.intake_idempotency_ttl_s,
                claim_s=settings.intake_produce_timeout_s + settings.intake_keys_claim_margin_s,
                wait_s=settings.intake_produce_timeout_s,
            )
            purger = asyncio.create_task(purge_every(intake.keys, settings.intake_keys_purge_s))
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
            if pool is not None:
                if intake.keys is not None:
                    await intake.keys.close()
                intake.keys = None
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
    )
    app.state.intake = intake
    # Prometheus; outside the versioned API; loopback or a metrics token (issue 13)
    app.mount(
        "/metrics",
        metrics_access.Guarded(
            make_asgi_app(), metrics_access.parse_hashes(settings.metrics_token_hashes)
        ),
    )
    retry_after = str(settings.intake_retry_after_s)

    # -------------------------------------------------------- errors

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.detail, **exc.extra}, exc.status, headers=headers)

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

    # -------------------------------------------------------- dependencies

    bearer_scheme = HTTPBearer(auto_error=False, description="an intake token")

    # async: FastAPI runs a plain `def` dependency in a thread pool, a thread hop per
    # request for work that never blocks (a dictionary lookup)
    async def authenticated(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Principal:
        if credentials is None:
            raise Refused(401, "missing bearer token (Authorization: Bearer <token>)")
        principal = intake.tokens.table().lookup(credentials.credentials)
        if principal is None:
            raise Refused(401, "unknown token")
        return principal

    def role(action: Action) -> Callable[[Principal], Awaitable[Principal]]:
        async def check(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
            _check(may(principal, action))
            return principal

        return check

    IdemKey = Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=MAX_KEY_CHARS,
            pattern=KEY_PATTERN,
            description="a retry with the same key returns the first answer, produces nothing",
        ),
    ]
    CaseIdPath = Annotated[str, PathParam(min_length=1, max_length=64, pattern=CASE_ID)]
    TownPath = Annotated[str, PathParam(min_length=6, max_length=12, pattern=rq.TOWN_PATTERN)]

    def by(action: Action) -> Any:
        return Annotated[Principal, Depends(role(action))]

    # -------------------------------------------------------- incidents (R1)

    @app.post(
        "/v1/incidents",
        status_code=202,
        response_model=Accepted,
        responses=WRITE_RESPONSES,
        tags=["emergency bureau"],
    )
    async def report_incident(
        body: rq.ReportIncident,
        principal: by(Action.REPORT_INCIDENT),  # type: ignore[valid-type]
        idempotency_key: IdemKey = None,
    ) -> JSONResponse:
        """Report an accident or natural disaster with the households hit (emergency_bureau)."""
        intake.place(principal, Action.REPORT_INCIDENT, body.town)

        async def produce(event_id: uuid.UUID, now: datetime) -> Answer:
            return await intake.send_one(
                rq.report_incident(body, intake.stamp(principal, event_id, now))
            )

        return await intake.write(
            principal, idempotency_key, "POST /v1/incidents", body.model_dump(mode="json"), produce
        )

    @app.post(
        "/v1/incidents/{incident_id}/updates",
        status_code=202,
        response_model=Accepted,
        responses=WRITE_RESPONSES,
        tags=["emergency bureau"],
    )
    async def update_incident(
        incident_id: CaseIdPath,
        body: rq.UpdateIncident,
        principal: by(Action.UPDATE_INCIDENT),  # type: ignore[valid-type]
        idempotency_key: IdemKey = None,
    ) -> JSONResponse:
        """New casualty figures or households for an incident (emergency_bureau)."""
        intake.place(principal, Action.UPDATE_INCIDENT, body.town)

        async def produce(event_id: uuid.UUID, now: datetime) -> Answer:
            return await intake.send_one(
                rq.update_incident(incident_id, body, intake.stamp(principal, event_id, now))
            )

        return await intake.write(
            principal,
            idempotency_key,
            f"POST /v1/incidents/{incident_id}/updates",
            body.model_dump(mode="json"),
            produce,
        )

    @app.post(
        "/v1/incidents/{incident_id}/close",
        status_code=202,
        response_model=Accepted,
        responses=WRITE_RESPONSES,
        tags=["emergency bureau"],
    )
    async def close_incident(
        incident_id: CaseIdPath,
        body: rq.CloseIncident,
        principal: by(Action.CLOSE_INCIDENT),  # type: ignore[valid-type]
        idempotency_key: IdemKey = None,
    ) -> JSONResponse:
        """Close an incident (emergency_bureau)."""
        intake.place(principal, Action.CLOSE_INCIDENT, body.town)

        async def produce(event_id: uuid.UUID, now: datetime) -> Answer:
            return await intake.send_one(
                rq.close_incident(incident_id, body, intake.stamp(principal, event_id, now))
            )

        return await intake.write(
            principal,
            idempotency_key,
            f"POST /v1/incidents/{incident_id}/close",
            body.model_dump(mode="json"),
            produce,
        )

    def emergency_period(
        path: str, model: type[BaseModel], mapper: Callable[[str, Any, rq.Stamp], Record]
    ) -> None:
        async def endpoint(
            incident_id: CaseIdPath,
            body: model,  # type: ignore[valid-type]
            principal: by(Action.DECLARE_EMERGENCY_PERIOD),  # type: ignore[valid-type]
            idempotency_key: IdemKey = None,
        ) -> JSONResponse:
            request = cast(rq.CaseBody, body)
            intake.place(principal, Action.DECLARE_EMERGENCY_PERIOD, request.town)

            async def produce(event_id: uuid.UUID, now: datetime) -> Answer:
                stamp = intake.stamp(principal, event_id, now)
                return await intake.send_one(mapper(incident_id, request, stamp))

            return await intake.write(
                principal,
                idempotency_key,
                f"POST /v1/incidents/{incident_id}/{path}",
                request.model_dump(mode="json"),
                produce,
            )

        endpoint.__name__ = f"emergency_period_{path.rsplit('/', 1)[-1].replace('-', '_')}"
        app.post(
            f"/v1/incidents/{{incident_id}}/{path}",
            status_code=202,
            response_model=Accepted,
            responses=WRITE_RESPONSES,
            tags=["emergency bureau"],
            summary=f"{model.__doc__ or path}".split("\n")[0],
            operation_id=endpoint.__name__,
        )(endpoint)

    emergency_period("emergency-period", rq.DeclareEmergencyPeriod, rq.declare_emergency_period)
    emergency_period("emergency-period/end", rq.EndEmergencyPeriod, rq.end_emergency_period)

    # -------------------------------------------------------- cases

    @app.post(
        "/v1/cases",
        status_code=202,
        response_model=Accepted,
        responses=WRITE_RESPONSES,
        tags=["towns", "civil affairs"],
    )
    async def register_case(
        body: rq.RegisterCase,
        principal: by(Action.REGISTER_CASE),  # type: ignore[valid-type]
        idempotency_key: IdemKey = None,
    ) -> JSONResponse:
        """Register a case: urgent (R5) or expenditure-type (R3), by its town (section 八)
        or civil affairs; a second grant for one cause by civil affairs only (P6).
        `correlation_id` in the answer is the case id."""
        rq.check_town(intake.county, body.town)
        second = body.second_grant_reason is not None
        _check(may_register(principal, body.town, body.urgency, second))

        async def produce(event_id: uuid.UUID, now: datetime) -> Answer:
            return await intake.send_one(
                rq.register_case(body, intake.stamp(principal, event_id, now))
            )

        return await intake.write(
            principal, idempotency_key, "POST /v1/cases", body.model_dump(mode="json"), produce
        )

    def case_write(
        path: str,
        action: Action,
        model: type[BaseModel],
        mapper: Callable[[str, Any, rq.Stamp], Record],
        summary: str,
        tag: str,
    ) -> None:
        async def endpoint(
            case_id: CaseIdPath,
            body: model,  # type: ignore[valid-type]
            principal: by(action),  # type: ignore[valid-type]
            idempotency_key: IdemKey = None,
        ) -> JSONResponse:
            request = cast(rq.CaseBody, body)
            intake.place(principal, action, request.town)

            async def produce(event_id: uuid.UUID, now: datetime) -> Answer:
                record = mapper(case_id, request, intake.stamp(principal, event_id, now))
                return await intake.send_one(record)

            return await intake.write(
                principal,
                idempotency_key,
                f"POST /v1/cases/{case_id}/{path}",
                request.model_dump(mode="json"),
                produce,
            )

        endpoint.__name__ = action.value
        app.post(
            f"/v1/cases/{{case_id}}/{path}",
            status_code=202,
            response_model=Accepted,
            responses=WRITE_RESPONSES,
            tags=[tag],
            summary=summary,
            operation_id=action.value,
        )(endpoint)

    case_write(
        "payments",
        Action.CONFIRM_PAYMENT,
        rq.ConfirmPayment,
        rq.confirm_payment,
        "Confirm a payment, with its bank reference (town; R5, P9)",
        "towns",
    )
    case_write(
        "paperwork",
        Action.COMPLETE_PAPERWORK,
        rq.CompletePaperwork,
        rq.complete_paperwork,
        "Paperwork completed (town; P1)",
        "towns",
    )
    case_write(
        "cancellation",
        Action.CANCEL_ADVANCE,
        rq.CancelAdvance,
        rq.cancel_advance,
        "Cancel an advance before it is paid (town)",
        "towns",
    )
    case_write(
        "reviews",
        Action.REVIEW_CASE,
        rq.ReviewCase,
        rq.review_case,
        "Review a case after the fact (civil_affairs; P8)",
        "civil affairs",
    )
    case_write(
        "deliberations",
        Action.DECIDE_DELIBERATION,
        rq.DecideDeliberation,
        rq.decide_deliberation,
        "Decide a deliberation (civil_affairs; R6)",
        "civil affairs",
    )

    # -------------------------------------------------------- reserves (R4, P10, P11)

    def reserve_write(
        path: str,
        action: Action,
        mapper: Callable[[str, rq.MoveReserve, rq.Stamp], Record],
        summary: str,
    ) -> None:
        async def endpoint(
            town: TownPath,
            body: rq.MoveReserve,
            principal: by(action),  # type: ignore[valid-type]
            idempotency_key: IdemKey = None,
        ) -> JSONResponse:
            intake.place(principal, action, town, ("path", "town"))

            async def produce(event_id: uuid.UUID, now: datetime) -> Answer:
                record = mapper(town, body, intake.stamp(principal, event_id, now))
                return await intake.send_one(record)

            return await intake.write(
                principal,
                idempotency_key,
                f"POST /v1/towns/{town}/reserve/{path}",
                body.model_dump(mode="json"),
                produce,
            )

        endpoint.__name__ = action.value
        app.post(
            f"/v1/towns/{{town}}/reserve/{path}",
            status_code=202,
            response_model=Accepted,
            responses=WRITE_RESPONSES,
            tags=["finance"],
            summary=summary,
            operation_id=action.value,
        )(endpoint)

    reserve_write(
        "replenishments",
        Action.REPLENISH_RESERVE,
        rq.replenish_reserve,
        "Replenish a town's reserve towards its size (finance; P11)",
    )
    reserve_write(
        "fundings", Action.FUND_RESERVE, rq.fund_reserve, "Fund a town's reserve (finance; R4)"
    )

    # -------------------------------------------------------- public disclosure (P7)

    @app.post(
        "/v1/towns/{town}/disclosures/{period}/published",
        status_code=202,
        response_model=Accepted,
        responses=WRITE_RESPONSES,
        tags=["towns", "civil affairs"],
    )
    async def publish_disclosure(
        town: TownPath,
        period: Annotated[
            str, PathParam(min_length=7, max_length=7, pattern=DISCLOSURE_PERIOD_PATTERN)
        ],
        body: rq.PublishDisclosure,
        principal: by(Action.PUBLISH_DISCLOSURE),  # type: ignore[valid-type]
        idempotency_key: IdemKey = None,
    ) -> JSONResponse:
        """The town's list of expenditure-type relief approved in `period` (YYYY-MM) was
        published (P7: within 10 working days of each approval). It covers the cases
        approved before it; one approved later needs the list published again. A town
        for itself, civil affairs for any town."""
        intake.place(principal, Action.PUBLISH_DISCLOSURE, town, ("path", "town"))

        async def produce(event_id: uuid.UUID, now: datetime) -> Answer:
            record = rq.publish_disclosure(
                town, period, body, intake.stamp(principal, event_id, now)
            )
            return await intake.send_one(record)

        return await intake.write(
            principal,
            idempotency_key,
            f"POST /v1/towns/{town}/disclosures/{period}/published",
            body.model_dump(mode="json"),
            produce,
        )

    # -------------------------------------------------------- hardship lists (section 二)

    @app.post(
        f"{HARDSHIP_PATH}/{{list_event_id}}/rows/{{row}}/follow-ups",
        status_code=202,
        response_model=Accepted,
        responses=WRITE_RESPONSES,
        tags=["civil affairs"],
    )
    async def follow_up_hardship(
        list_event_id: uuid.UUID,
        row: Annotated[int, PathParam(ge=0, lt=MAX_HARDSHIP_ROWS)],
        body: rq.FollowUpHardship,
        principal: by(Action.FOLLOW_UP_HARDSHIP),  # type: ignore[valid-type]
        idempotency_key: IdemKey = None,
    ) -> JSONResponse:
        """Follow up one row of a department's list (civil_affairs; section 二) with a
        written decision (P9): `case_opened` with its case_id, `no_relief_needed`, or
        `referred` with referred_to. The row is named by its list record's event id (the
        `event_id` of the pushed record, as the casebook lists it) and its index; `town`
        is the list's. The first decision on a row stands: the submission of a later one,
        or of one naming no row of that town, answers `rejected` with the reason."""
        intake.place(principal, Action.FOLLOW_UP_HARDSHIP, body.town)

        async def produce(event_id: uuid.UUID, now: datetime) -> Answer:
            record = rq.follow_up_hardship(
                list_event_id, row, body, intake.stamp(principal, event_id, now)
            )
            return await intake.send_one(record)

        return await intake.write(
            principal,
            idempotency_key,
            f"POST {HARDSHIP_PATH}/{list_event_id}/rows/{row}/follow-ups",
            body.model_dump(mode="json"),
            produce,
        )

    @app.post(
        HARDSHIP_PATH,
        status_code=202,
        response_model=HardshipAccepted,
        responses={
            **WRITE_RESPONSES,
            422: {"model": CsvInvalid | Invalid, "description": "no row accepted, or bad file"},
        },
        tags=["departments"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {
                        "schema": {
                            "type": "string",
                            "description": "header town,household_head_id,category[,note]; "
                            "at most 5,000 rows",
                        }
                    }
                },
            }
        },
    )
    async def push_hardship_list(
        request: Request,
        principal: by(Action.PUSH_HARDSHIP_LIST),  # type: ignore[valid-type]
        idempotency_key: IdemKey = None,
    ) -> JSONResponse:
        """Upload suspected hardship cases (department). Rows are validated one by one;
        the answer reports each row, accepted or with what was wrong."""
        raw = await request.body()
        try:
            validated = validate_rows(
                decode_upload(raw), intake.county, intake.hash_key, intake.clock().date()
            )
        except CsvRefused as exc:
            raise rq.RequestInvalid([(("body",), str(exc))]) from None
        rows = [r.model_dump(mode="json") for r in validated.reports]
        if validated.accepted_count == 0:
            return JSONResponse(
                {
                    "detail": "no row was accepted; nothing recorded",
                    "accepted": 0,
                    "rejected": validated.rejected_count,
                    "rows": rows,
                },
                422,
            )

        async def produce(event_id: uuid.UUID, now: datetime) -> Answer:
            records = records_for(
                validated, event_id, principal.org, principal.actor, now.isoformat()
            )
            acks = await asyncio.gather(*(intake.send(r) for r in records))
            return Answer(
                202,
                HardshipAccepted(
                    accepted=validated.accepted_count,
                    rejected=validated.rejected_count,
                    rows=validated.reports,
                    records=[accepted(r, a) for r, a in zip(records, acks, strict=True)],
                ).model_dump(mode="json"),
            )

        return await intake.write(
            principal,
            idempotency_key,
            f"POST {HARDSHIP_PATH}",
            {"csv": raw.decode("utf-8", "replace")},
            produce,
        )

    # -------------------------------------------------------- bulk (issue 14)

    from services.intake import bulk_api  # it builds on this module's write path

    bulk_api.install(app, intake, authenticated)

    # -------------------------------------------------------- reads

    @app.get(
        "/v1/towns/{town}/cases/{case_id}",
        response_model=CaseView,
        responses=READ_RESPONSES,
        tags=["reads"],
    )
    async def read_case(
        town: TownPath,
        case_id: CaseIdPath,
        principal: by(Action.READ),  # type: ignore[valid-type]
    ) -> CaseView:
        """A case of a town: where it stands, its money, its deadlines and every decision
        with its rule, figures and reasons, as the processor decided them (town: own town
        only). A case id is unique only within its town."""
        intake.place(principal, Action.READ, town, ("path", "town"))
        view = await intake.reads.case(town, case_id)
        if view is None:
            raise Refused(404, f"town {town} has no case {case_id} (yet)")
        return view

    @app.get(
        "/v1/cases",
        response_model=CaseList,
        responses=READ_RESPONSES,
        tags=["reads"],
    )
    async def list_cases(
        principal: Annotated[Principal, Depends(authenticated)],
        town: Annotated[
            str | None, Query(min_length=6, max_length=12, pattern=rq.TOWN_PATTERN)
        ] = None,
        status: Annotated[list[CaseStatus] | None, Query()] = None,
        incident_id: Annotated[
            str | None, Query(min_length=1, max_length=64, pattern=CASE_ID)
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_CASE_LIST)] = 100,
    ) -> CaseList:
        """Cases by town, status (repeatable) and incident, the most recently decided
        first, each with its 24-hour deadline and its latest decision's rule and figures.
        A town lists its own town's; the emergency bureau the cases of an incident; civil
        affairs, finance and auditors any town's."""
        if town is not None:
            rq.check_town(intake.county, town, ("query", "town"))
        _check(may_list_cases(principal, town, incident_id))
        statuses = [s.value for s in dict.fromkeys(status or [])]
        return await intake.reads.cases(town, statuses, incident_id, limit)

    @app.get("/v1/me", response_model=Me, responses=READ_RESPONSES, tags=["reads"])
    async def me(principal: Annotated[Principal, Depends(authenticated)]) -> Me:
        """Who this token belongs to: role, organisation and, for a town, its town."""
        return Me(role=principal.role.value, org=principal.org, town=principal.town)

    @app.get(
        "/v1/submissions/{event_id}",
        response_model=SubmissionView,
        responses=READ_RESPONSES,
        tags=["reads"],
    )
    async def read_submission(
        event_id: uuid.UUID,
        principal: by(Action.READ_SUBMISSION),  # type: ignore[valid-type]
    ) -> SubmissionView:
        """What became of a record this API accepted (the `event_id` of its 202):
        `pending` (not decided yet, or not known yet), `decided` with the decisions it
        caused, or `rejected` with the reason. A town's token sees its own town's, the
        bureau's and a department's their own organisation's; anything else reads as
        pending."""
        town, org = submission_scope(principal)
        return await intake.reads.submission(event_id, ReadScope(town=town, org=org))

    @app.get(
        "/v1/towns/{town}/reserve",
        response_model=ReserveView,
        responses=READ_RESPONSES,
        tags=["reads"],
    )
    async def read_reserve(
        town: TownPath,
        principal: by(Action.READ),  # type: ignore[valid-type]
    ) -> ReserveView:
        """A town's reserve: size, available, held, last movements (R4)."""
        intake.place(principal, Action.READ, town, ("path", "town"))
        return await intake.reads.reserve(town, intake.county.town(town).reserve_fen)

    @app.get(
        "/v1/towns/{town}/deadlines",
        response_model=list[DeadlineView],
        responses=READ_RESPONSES,
        tags=["reads"],
    )
    async def read_deadlines(
        town: TownPath,
        principal: by(Action.READ),  # type: ignore[valid-type]
    ) -> list[DeadlineView]:
        """Open deadlines of a town's cases (R5: 24 h, P1: 5 days), due as the processor's
        grants state them."""
        intake.place(principal, Action.READ, town, ("path", "town"))
        return await intake.reads.deadlines(town)

    # -------------------------------------------------------- operations

    @app.get(
        "/healthz",
        response_model=health_model.HealthView,
        responses={
            503: {
                "model": health_model.HealthView,
                "description": "degraded: records wait and the processor makes no progress, "
                "or Kafka cannot be read",
            }
        },
        tags=["operations"],
    )
    async def healthz() -> JSONResponse:
        """Whether the processor consumes what intake accepts: its consumer group's committed
        offsets against the intake topic's end, read in the background every few seconds.
        503 when records wait and the committed offsets have not advanced for the configured
        time (RELIEF_INTAKE_HEALTH_STALL_S), or when Kafka cannot be read."""
        view = intake.health.report()
        return JSONResponse(view.model_dump(mode="json"), 200 if view.status == "ok" else 503)

    @app.get("/livez", response_model=Live, tags=["operations"])
    async def livez() -> Live:
        """The process answers HTTP (whatever Kafka and the processor do)."""
        return Live(status="ok")

    return _wrap(app, settings)


def _wrap(app: FastAPI, settings: IntakeSettings) -> FastAPI:
    # the size limit sits outside the application, so an oversized body is never buffered
    # whole; the access log outside that, so a 413 is counted too
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.intake_max_body_bytes,
        csv_max_bytes=settings.intake_max_csv_bytes,
    )
    app.add_middleware(AccessLog)
    return app
