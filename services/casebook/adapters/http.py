"""The casebook's reads over HTTP (`python -m services.casebook serve`).

    GET /v1/towns/{town}/cases/{case_id}   a case of the town, with its whole story
    GET /v1/towns/{town}/deadlines         the town's open deadlines (R5, P1)
    GET /v1/cases                          cases by town, status and incident (the console)
    GET /v1/open-cases                     unpaid urgent advances (the finance dashboard)
    GET /v1/submissions/{event_id}         pending, decided or rejected
    GET /v1/disclosures/{town}?period=YYYY-MM[&format=csv]   the public list (P7)
    GET /disclosures/{town}?period=YYYY-MM the same list as a page in Chinese
    GET /v1/hardship-rows[?town=&state=waiting|followed_up]   rows of departments' lists
    GET /healthz, /livez, /metrics

Callers are services with a token (intake, the dashboard); the people behind them are
authorised there. A read names its scope: a case is read by (town, case id), never by id
alone, and a submission read with `town` (a town's token) or `org` (a bureau's or a
department's) answers pending for anything outside it, as if unknown.
"""

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relief_platform import metrics_access
from schemas.intake import DISCLOSURE_PERIOD_PATTERN
from schemas.policy import load_config
from schemas.workdays import load_calendar
from services.casebook.adapters import postgres
from services.casebook.domain import disclosure
from services.casebook.domain.access import allowed, bearer, parse_hashes
from services.casebook.domain.hardship import MAX_WAITING_ROWS
from services.casebook.domain.views import (
    MAX_CASE_LIST,
    MAX_DEADLINES,
    MAX_LIST_STATUSES,
    MAX_OPEN_CASES,
    CaseList,
    CaseStory,
    DeadlineView,
    DisclosureListView,
    DisclosureRowView,
    HardshipRows,
    OpenCases,
    SubmissionView,
)
from services.casebook.settings import CasebookSettings

log = logging.getLogger("relief.casebook.http")

TOWN_PATTERN = r"^[0-9]{6,12}$"
CASE_ID_PATTERN = r"^[0-9A-Za-z_.:\-]+$"
STATUS_PATTERN = re.compile(r"^[a-z_]{1,32}$")
CONNECT_TIMEOUT_S = 5.0


class Problem(BaseModel):
    detail: str


class Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Unavailable(Exception):
    """PostgreSQL does not answer: 503 with Retry-After."""


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "relief_casebook_requests",
            "casebook HTTP requests",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "relief_casebook_request_seconds",
            "casebook HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )


class Counted:
    """Request metrics by route template (never the path: case ids stay out of labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def noting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


class Reads:
    """The read pool, made on first use so the server starts while PostgreSQL is away."""

    def __init__(self, url: str, pool_max: int) -> None:
        self.url = url
        self.pool_max = pool_max
        self._pool: postgres.Pool | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> postgres.Pool:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                try:
                    self._pool = await asyncio.wait_for(
                        postgres.connect_pool(self.url, self.pool_max), CONNECT_TIMEOUT_S
                    )
                except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                    raise Unavailable(f"the casebook database does not answer: {exc}") from exc
            return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


_READ_ERRORS = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no valid service token"},
    404: {"model": Problem, "description": "not found"},
    503: {"model": Problem, "description": "the casebook database does not answer"},
}


def create_app(settings: CasebookSettings, registry: CollectorRegistry | None = None) -> FastAPI:
    hashes = parse_hashes(settings.casebook_token_hashes)
    if not hashes:
        log.warning("RELIEF_CASEBOOK_TOKEN_HASHES is empty: every read will be 401")
    reads = Reads(settings.database_url, settings.casebook_read_pool_max)
    config = load_config(settings.policy_file)  # a bad file stops the start, named
    calendar = load_calendar(settings.workdays_file)
    working_days = config.policy.disclosure_working_days
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    retry_after = str(settings.casebook_retry_after_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await reads.close()

    app = FastAPI(
        title="Huantai relief casebook",
        version="1.0.0",
        description="Cases, deadlines and submissions as the processor's decisions state "
        "them; for services holding a casebook token.",
        lifespan=lifespan,
        telemetry=metrics_access.NO_TELEMETRY,
    )
    # loopback or a metrics token (issue 13)
    app.mount(
        "/metrics",
        metrics_access.Guarded(
            make_asgi_app(metrics.registry),
            metrics_access.parse_hashes(settings.metrics_token_hashes),
        ),
    )

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.detail}, exc.status, headers=headers)

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        log.warning("read failed: %s", exc)
        return JSONResponse({"detail": str(exc)}, 503, headers={"Retry-After": retry_after})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # loc and msg only: never the input back
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, 422)

    def caller(request: Request) -> None:
        if not allowed(hashes, bearer(request.headers.get("Authorization"))):
            raise Refused(401, "a casebook token is required")

    Caller = Annotated[None, Depends(caller)]
    Town = Annotated[str, PathParam(min_length=6, max_length=12, pattern=TOWN_PATTERN)]
    CaseId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=CASE_ID_PATTERN)]

    async def db() -> postgres.Pool:
        return await reads.pool()

    @app.get("/v1/towns/{town}/cases/{case_id}", response_model=CaseStory, responses=RESPONSES)
    async def read_case(town: Town, case_id: CaseId, _: Caller) -> CaseStory:
        """A case of the town: status, money, deadlines and every decision."""
        try:
            story = await postgres.case_story(await db(), town, case_id)
        except _READ_ERRORS as exc:
            raise Unavailable(f"case read failed: {type(exc).__name__}") from exc
        if story is None:
            raise Refused(404, f"town {town} has no case {case_id} (yet)")
        return story

    @app.get("/v1/towns/{town}/deadlines", response_model=list[DeadlineView], responses=RESPONSES)
    async def read_deadlines(
        town: Town,
        _: Caller,
        limit: Annotated[int, Query(ge=1, le=MAX_DEADLINES)] = MAX_DEADLINES,
    ) -> list[DeadlineView]:
        """The town's open deadlines, soonest first, due as the grants state them."""
        try:
            return await postgres.open_deadlines(await db(), town, limit)
        except _READ_ERRORS as exc:
            raise Unavailable(f"deadline read failed: {type(exc).__name__}") from exc

    @app.get("/v1/cases", response_model=CaseList, responses=RESPONSES)
    async def read_cases(
        _: Caller,
        town: Annotated[str | None, Query(pattern=TOWN_PATTERN, max_length=12)] = None,
        status: Annotated[list[str] | None, Query()] = None,
        incident_id: Annotated[
            str | None, Query(min_length=1, max_length=64, pattern=CASE_ID_PATTERN)
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_CASE_LIST)] = 100,
    ) -> CaseList:
        """Cases by town (every town when absent), status (repeatable; any when absent)
        and incident, the most recently decided first, with each one's latest rule and
        figures."""
        statuses = status or []
        if len(statuses) > MAX_LIST_STATUSES or not all(
            STATUS_PATTERN.fullmatch(s) for s in statuses
        ):
            raise Refused(422, f"status: at most {MAX_LIST_STATUSES}, each like 'advanced'")
        try:
            return await postgres.list_cases(await db(), town, statuses, incident_id, limit)
        except _READ_ERRORS as exc:
            raise Unavailable(f"case list read failed: {type(exc).__name__}") from exc

    @app.get("/v1/open-cases", response_model=OpenCases, responses=RESPONSES)
    async def read_open_cases(
        _: Caller,
        town: Annotated[str | None, Query(pattern=TOWN_PATTERN, max_length=12)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_OPEN_CASES)] = 200,
    ) -> OpenCases:
        """Urgent advances not yet paid or cancelled, oldest first."""
        try:
            return await postgres.open_cases(await db(), town, limit)
        except _READ_ERRORS as exc:
            raise Unavailable(f"open cases read failed: {type(exc).__name__}") from exc

    @app.get("/v1/submissions/{event_id}", response_model=SubmissionView, responses=RESPONSES)
    async def read_submission(
        event_id: uuid.UUID,
        _: Caller,
        town: Annotated[str | None, Query(pattern=TOWN_PATTERN, max_length=12)] = None,
        org: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    ) -> SubmissionView:
        """Pending, decided (with the decisions it caused) or rejected (with the reason),
        as a reader scoped to `town` or `org` may see it."""
        try:
            return await postgres.submission(await db(), event_id, town, org)
        except _READ_ERRORS as exc:
            raise Unavailable(f"submission read failed: {type(exc).__name__}") from exc

    # ------------------------------------------------ public disclosure (P7, section 十)

    Period = Annotated[str, Query(min_length=7, max_length=7, pattern=DISCLOSURE_PERIOD_PATTERN)]
    ScopeTown = Annotated[
        str | None,
        Query(
            pattern=TOWN_PATTERN,
            max_length=12,
            description="the reader's town, when the reader is a town: it sees its own list only",
        ),
    ]

    async def disclosure_list(town: str, period: str, scope_town: str | None) -> DisclosureListView:
        if town not in config.county:
            raise Refused(404, f"the county has no town {town}")
        if scope_town is not None and scope_town != town:
            raise Refused(403, f"town {scope_town} may read its own disclosure list only")
        try:
            cases = await postgres.disclosure_cases(await db(), town, period)
        except _READ_ERRORS as exc:
            raise Unavailable(f"disclosure read failed: {type(exc).__name__}") from exc
        listed = disclosure.rows(cases, calendar, working_days)
        return DisclosureListView(
            town=town,
            period=period,
            working_days=working_days,
            calendar_until=calendar.last_day,
            count=len(listed),
            total_fen=sum(r.amount_fen for r in listed),
            rows=[DisclosureRowView.model_validate(r, from_attributes=True) for r in listed],
        )

    @app.get(
        "/v1/disclosures/{town}",
        response_model=DisclosureListView,
        responses={
            **RESPONSES,
            200: {"content": {"text/csv": {}}, "description": "the list (JSON, or CSV)"},
            403: {"model": Problem, "description": "a town reading another town's list"},
        },
    )
    async def read_disclosure(
        town: Town,
        _: Caller,
        period: Period,
        scope_town: ScopeTown = None,
        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
    ) -> Response:
        """The town's public list of expenditure-type relief approved in `period`
        (P7): masked name, category, amount, approving level, approval date, the date it
        must be published by (N working days later) and whether it is. Urgent cases are
        never listed; nothing personal beyond the masked name."""
        view = await disclosure_list(town, period, scope_town)
        if format == "csv":
            listed = [disclosure.Row(**r.model_dump()) for r in view.rows]
            return Response(
                disclosure.csv_text(listed).encode("utf-8-sig"),  # BOM: Excel reads UTF-8
                media_type="text/csv; charset=utf-8",
                headers={
                    "Content-Disposition": f'attachment; filename="disclosure-{town}-{period}.csv"'
                },
            )
        return JSONResponse(view.model_dump(mode="json"))

    @app.get("/disclosures/{town}", response_class=HTMLResponse, responses=RESPONSES)
    async def disclosure_page(
        town: Town, _: Caller, period: Period, scope_town: ScopeTown = None
    ) -> HTMLResponse:
        """The same list as a plain page in Chinese (公示名单)."""
        view = await disclosure_list(town, period, scope_town)
        listed = [disclosure.Row(**r.model_dump()) for r in view.rows]
        name = config.county.town(town).name_zh
        return HTMLResponse(disclosure.page(town, name, period, working_days, listed))

    # ------------------------------------------------ hardship lists (section 二)

    @app.get(
        "/v1/hardship-rows",
        response_model=HardshipRows,
        responses={
            **RESPONSES,
            403: {"model": Problem, "description": "a town reading another town's rows"},
        },
    )
    async def read_hardship_rows(
        _: Caller,
        town: Annotated[str | None, Query(pattern=TOWN_PATTERN, max_length=12)] = None,
        scope_town: ScopeTown = None,
        state: Annotated[str, Query(pattern="^(waiting|followed_up)$")] = "waiting",
        limit: Annotated[int, Query(ge=1, le=MAX_WAITING_ROWS)] = 200,
    ) -> HardshipRows:
        """Rows of the lists departments pushed (section 二): those waiting for civil
        affairs' follow-up (the oldest list first), or those followed up with the written
        decision (the latest first). Households by their keyed hash, never an ID number."""
        if scope_town is not None:
            if town is not None and town != scope_town:
                raise Refused(403, f"town {scope_town} may read its own rows only")
            town = scope_town
        try:
            return await postgres.hardship_rows(await db(), town, state == "waiting", limit)
        except _READ_ERRORS as exc:
            raise Unavailable(f"hardship rows read failed: {type(exc).__name__}") from exc

    @app.get("/healthz", responses={503: {"model": Problem}})
    async def healthz() -> JSONResponse:
        """200 when the casebook's schema answers."""
        try:
            ok = await postgres.ready(await db())
        except (Unavailable, *_READ_ERRORS) as exc:
            return JSONResponse({"ok": False, "detail": type(exc).__name__}, 503)
        return JSONResponse({"ok": ok}, 200 if ok else 503)

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(Counted, metrics=metrics)
    return app
