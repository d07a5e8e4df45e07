"""The finance dashboard: an aiohttp app over the ledger's read side.

    GET /              the page (no data in it; without a session it goes to /signin)
    GET /signin        the sign-in form; POST /signin exchanges a finance or county token
                       for a cookie (HttpOnly, SameSite=Strict, Secure); POST /signout
    GET /api/snapshot  the current snapshot as JSON              (finance or county token)
    GET /events        server-sent events: a snapshot whenever it changes  (token)
    GET /api/towns/{town}/reserve   a town's reserve and its last movements
                                    (finance, county or service token: intake reads it)
    POST /api/verify   run verify now: the report with the head hash  (finance or county)
    GET /api/towns/{town}/statement.csv?from=D&to=D   a town's statement (finance or county)
    GET /metrics       Prometheus metrics of the ledger (loopback, or a metrics token)

A token is `Authorization: Bearer` (intake, the console, scripts) or the sign-in cookie
(the page): never a query parameter, which proxies, logs and history keep.
    GET /healthz       200 once a snapshot was read

One background task reads a snapshot every `dashboard_interval_s` (cheaply: only when the
journal's last seq or the casebook's open cases moved, or every few seconds for the
day's figures) and hands the same bytes to every connected page, so a wall screen and
twenty laptops cost one query. Open cases come from the casebook over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from relief_platform import metrics_access
from schemas.policy import load_config
from services.ledger.adapters import postgres
from services.ledger.adapters.metrics import LedgerMetrics
from services.ledger.domain.verify import Verifier
from services.ledger.web import snapshot as snap
from services.ledger.web.auth import (
    COOKIE,
    MAX_TOKEN_CHARS,
    ROLES,
    VIEWERS,
    TokenCheck,
    bearer,
    parse_hashes,
)
from services.ledger.web.casebook import OpenCasesReader
from services.ledger.web.lag import LagReader
from services.ledger.web.settings import DashboardSettings

log = logging.getLogger("relief.ledger.web")

STATIC_PACKAGE = "services.ledger.web.static"
STATIC_FILES = {
    "index.html": "text/html",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
# Re-read even when the journal did not move: "today" depends on the clock.
FULL_REFRESH_S = 10.0
SHUTDOWN_S = 5.0  # then open streams are cut
KEEPALIVE_S = 15.0  # an SSE comment, so proxies keep the stream open
MAX_MOVEMENTS = 1_000  # a reserve's movements in one answer at most

SETTINGS_KEY = web.AppKey("settings", DashboardSettings)
TOKENS_KEY = web.AppKey("tokens", TokenCheck)
METRICS_KEY = web.AppKey("metrics", LedgerMetrics)
METRICS_TOKENS_KEY = web.AppKey("metrics_tokens", frozenset[str])


class Hub:
    """Reads snapshots and fans them out to the connected pages."""

    def __init__(self, settings: DashboardSettings, metrics: LedgerMetrics) -> None:
        config = load_config(settings.policy_file)
        self.settings = settings
        self.county = config.county
        self.relief_deadline = config.policy.relief_deadline
        self.metrics = metrics
        self.cases = OpenCasesReader(
            settings.casebook_url,
            settings.casebook_token,
            settings.casebook_timeout_s,
            settings.dashboard_max_open_cases,
            settings.dashboard_open_cases_interval_s,
        )
        self._cases: dict[str, Any] | None = None  # the casebook's last answer
        self.pool: postgres.Pool | None = None
        self.current: bytes | None = None  # the last snapshot, as SSE-ready JSON
        self.changed = asyncio.Condition()
        self.generation = 0
        self.clients = 0
        self.verified: snap.VerifyStatus | None = None
        self.verifying = asyncio.Lock()
        self._verifier: Verifier | None = None  # carried on from run to run
        self._tasks: list[asyncio.Task[None]] = []
        self._version: tuple[int, int] | None = None
        self._data: str | None = None
        self._read_at = 0.0
        self._closing = False

    async def start(self) -> None:
        self.pool = await postgres.connect_pool(
            self.settings.database_url, self.settings.dashboard_pool_max
        )
        self._tasks = [
            asyncio.create_task(self._loop(self.settings.dashboard_interval_s, self.refresh)),
            asyncio.create_task(self._loop(self.settings.dashboard_verify_interval_s, self.verify)),
        ]
        if self.settings.kafka_bootstrap:
            self._tasks.append(asyncio.create_task(self._lag_loop()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pool is not None:
            await self.pool.close()
        await self.cases.close()

    async def _loop(self, interval_s: float, step: Any) -> None:
        while True:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                # PostgreSQL away: the page keeps its last picture and says how old it is
                log.warning("dashboard %s failed", step.__name__, exc_info=True)
            await asyncio.sleep(interval_s)

    async def refresh(self, force: bool = False) -> None:
        if self.pool is None:
            raise RuntimeError("hub used before start")
        version = await snap.version(self.pool)
        fresh = await self.cases.read()
        cases_moved = fresh is not None and fresh != self._cases
        if fresh is not None:
            self._cases = fresh
        stale = time.monotonic() - self._read_at >= FULL_REFRESH_S
        unchanged = version == self._version and not cases_moved and not stale
        if not force and unchanged and self.current is not None:
            return
        started = time.perf_counter()
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            data = await snap.read(
                conn,
                self.county,
                self.relief_deadline,
                datetime.now(UTC),
                open_cases=self._cases,
                max_postings=self.settings.dashboard_max_postings,
            )
        # what the page shows of open cases is current only if the casebook just answered
        data["open_cases_known"] = fresh is not None
        self.metrics.observe_snapshot(data, time.perf_counter() - started)
        self._version, self._read_at = version, time.monotonic()
        data["verification"] = snap.verification(self.verified)
        body = json.dumps(data, ensure_ascii=False, sort_keys=True)
        if body == self._data:
            return
        self._data = body
        await self._publish(body)

    async def _publish(self, body: str) -> None:
        envelope = {"generated_at": datetime.now(UTC).isoformat(), "data": json.loads(body)}
        self.current = json.dumps(envelope, ensure_ascii=False).encode()
        async with self.changed:
            self.generation += 1
            self.changed.notify_all()

    async def verify(self, full: bool = False) -> None:
        """Every minute: carry on from the heads verified last time (the entries appended
        since, the running balances and day figures against the sums); on demand (`full`)
        and at start: every chain from its first entry. One at a time."""
        async with self.verifying:
            started = time.perf_counter()
            # the chain key stays with the writer and finance's `verify`: here the unkeyed
            # chain, the balances and the lines (least privilege)
            if full or self._verifier is None:
                self._verifier = Verifier(None)
            report = await postgres.verify(
                self.settings.database_url, None, verifier=self._verifier
            )
            self.metrics.observe_verify(
                report.ok,
                report.entries_checked,
                len(report.problems),
                time.perf_counter() - started,
            )
            self.verified = snap.VerifyStatus(
                ok=report.ok,
                head_hash=report.head_hash.hex(),
                entries_checked=report.entries_checked,
                problems=tuple(p.describe() for p in report.problems),
                verified_at=datetime.now(UTC),
            )
        if self.pool is not None:
            await self.refresh(force=True)

    async def _lag_loop(self) -> None:
        reader = LagReader(
            self.settings.kafka_bootstrap, self.settings.streams(), self.settings.emergency_app_id
        )
        try:
            while True:
                try:
                    if self.pool is not None:
                        lags, ends = await reader.read(self.pool)
                        self.metrics.observe_lag(lags, ends)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.metrics.lag_failed()
                    log.info("consumer lag not read: %s", exc)
                await asyncio.sleep(self.settings.dashboard_lag_interval_s)
        finally:
            await reader.close()

    async def close_streams(self, _app: web.Application | None = None) -> None:
        """On shutdown: end every event stream now rather than at its next keep-alive."""
        self._closing = True
        async with self.changed:
            self.changed.notify_all()

    async def updates(self) -> AsyncIterator[bytes | None]:
        """The current snapshot, then each new one; None at keep-alive time."""
        seen = 0  # generation 0: nothing published yet
        while not self._closing:
            async with self.changed:
                if self.generation == seen and not self._closing:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.changed.wait(), KEEPALIVE_S)
                generation, current = self.generation, self.current
            if generation == seen or current is None:
                yield None
                continue
            seen = generation
            yield current


HUB_KEY = web.AppKey("hub", Hub)

# ---------------------------------------------------------------- handlers


def _token(request: web.Request) -> tuple[str | None, bool]:
    """The caller's token, and whether it came from the sign-in cookie."""
    header = bearer(request.headers.get("Authorization"))
    if header:
        return header, False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


def _same_origin(request: web.Request) -> None:
    # SameSite=Strict keeps the cookie off other sites' requests; an Origin that is not
    # ours is refused as well (as the console does)
    origin = request.headers.get("Origin")
    if origin and origin.split("://", 1)[-1] != request.headers.get("Host", ""):
        raise web.HTTPForbidden(
            text=json.dumps({"error": "cross-site request refused"}),
            content_type="application/json",
        )


def _authorized(request: web.Request, roles: tuple[str, ...] = VIEWERS) -> None:
    token, from_cookie = _token(request)
    viewer = request.app[TOKENS_KEY].viewer(token)
    if viewer is None or viewer.role not in roles:
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "a finance or county token is required"}),
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="relief-dashboard"'},
        )
    if from_cookie and request.method not in ("GET", "HEAD"):
        _same_origin(request)


async def signin_page(request: web.Request) -> web.Response:
    return _signin_form(failed=False)


def _signin_form(failed: bool) -> web.Response:
    body = resources.files(STATIC_PACKAGE).joinpath("signin.html").read_bytes()
    if failed:
        body = body.replace(b'class="error" hidden>', b'class="error" role="alert">')
    return web.Response(
        body=body,
        status=401 if failed else 200,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
        },
    )


async def signin(request: web.Request) -> web.Response:
    """A finance or county token for a cookie the page's requests (and EventSource's
    reconnects) carry; a wrong token is the form again with 401, and no cookie."""
    _same_origin(request)
    form = await request.post()
    raw = form.get("token")
    token = raw.strip() if isinstance(raw, str) else ""
    viewer = request.app[TOKENS_KEY].viewer(token) if len(token) <= MAX_TOKEN_CHARS else None
    if viewer is None or viewer.role not in VIEWERS:
        return _signin_form(failed=True)
    settings = request.app[SETTINGS_KEY]
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings.dashboard_session_s,
        path="/",
        httponly=True,
        secure=settings.dashboard_cookie_secure or request.secure,
        samesite="Strict",
    )
    raise response


async def signout(request: web.Request) -> web.Response:
    _same_origin(request)
    response = web.HTTPSeeOther("/signin")
    response.del_cookie(COOKIE, path="/")
    raise response


async def static(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "index.html")
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    body = resources.files(STATIC_PACKAGE).joinpath(name).read_bytes()
    return web.Response(
        body=body,
        content_type=STATIC_FILES[name],
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


async def api_snapshot(request: web.Request) -> web.Response:
    _authorized(request)
    hub = request.app[HUB_KEY]
    if hub.current is None:
        raise web.HTTPServiceUnavailable(text="no snapshot read yet")
    return web.Response(body=hub.current, content_type="application/json", charset="utf-8")


async def api_reserve(request: web.Request) -> web.Response:
    """A town's reserve: available, held, and its last movements with the running
    balance (R4). Intake serves it to towns, scoped to their own town."""
    _authorized(request, ROLES)
    hub = request.app[HUB_KEY]
    if hub.pool is None:
        raise web.HTTPServiceUnavailable(text="the ledger is not connected yet")
    town = request.match_info["town"]
    try:
        limit = min(max(int(request.query.get("movements", "100")), 1), MAX_MOVEMENTS)
    except ValueError:
        raise web.HTTPBadRequest(text="movements: a number") from None
    balances = {b.kind: b.balance_fen for b in await postgres.balances(hub.pool, town)}
    movements = await postgres.reserve_movements(hub.pool, town, limit=limit)
    return web.json_response(
        {
            "town": town,
            "available_fen": balances.get("town_reserve", 0),
            "held_fen": balances.get("town_reserve_held", 0),
            "paid_fen": balances.get("relief_paid", 0),
            "movements": [
                {
                    "posting_id": str(m.posting_id),
                    "kind": m.kind,
                    "occurred_at": m.occurred_at.isoformat(),
                    "change_fen": m.change_fen,
                    "balance_fen": m.balance_fen,
                }
                for m in movements
            ],
        }
    )


async def api_verify(request: web.Request) -> web.Response:
    """Run `verify` now (every hash chain and balance recomputed) and answer its report
    with the head hash to publish; finance and county staff (P10)."""
    _authorized(request)
    hub = request.app[HUB_KEY]
    await hub.verify(full=True)
    return web.json_response(snap.verification(hub.verified))


MAX_STATEMENT_DAYS = 366  # a year at most in one statement


async def api_statement(request: web.Request) -> web.Response:
    """A town's statement for the days [from, to] (China Standard Time) as CSV, as
    `python -m services.ledger statement` writes it."""
    _authorized(request)
    hub = request.app[HUB_KEY]
    if hub.pool is None:
        raise web.HTTPServiceUnavailable(text="the ledger is not connected yet")
    town = request.match_info["town"]
    try:
        first = date.fromisoformat(request.query["from"])
        last = date.fromisoformat(request.query["to"])
    except (KeyError, ValueError):
        raise web.HTTPBadRequest(text="from and to: days as YYYY-MM-DD") from None
    if not timedelta(0) <= last - first <= timedelta(days=MAX_STATEMENT_DAYS):
        raise web.HTTPBadRequest(text=f"to is on or after from, {MAX_STATEMENT_DAYS} days at most")
    text = await postgres.statement(hub.pool, town, first, last)
    name = f"statement-{town}-{first.isoformat()}-{last.isoformat()}.csv"
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def events(request: web.Request) -> web.StreamResponse:
    _authorized(request)
    hub = request.app[HUB_KEY]
    settings = request.app[SETTINGS_KEY]
    if hub.clients >= settings.dashboard_max_clients:
        raise web.HTTPServiceUnavailable(text="too many dashboards connected")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    hub.clients += 1
    hub.metrics.clients.set(hub.clients)
    try:
        await response.write(b"retry: 2000\n\n")
        async for body in hub.updates():
            if body is None:
                await response.write(b": keep-alive\n\n")
            else:
                await response.write(b"event: snapshot\ndata: " + body + b"\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the page went away
    finally:
        hub.clients -= 1
        hub.metrics.clients.set(hub.clients)
    return response


async def metrics_view(request: web.Request) -> web.Response:
    if not metrics_access.allowed(
        request.remote, _lower(request.headers), request.app[METRICS_TOKENS_KEY]
    ):
        raise web.HTTPNotFound()
    registry = request.app[METRICS_KEY].registry
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


async def healthz(request: web.Request) -> web.Response:
    ok = request.app[HUB_KEY].current is not None
    return web.json_response({"ok": ok}, status=200 if ok else 503)


def build_app(settings: DashboardSettings, metrics: LedgerMetrics | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)  # it takes no uploads
    metrics = metrics or LedgerMetrics()
    hub = Hub(settings, metrics)
    app[HUB_KEY] = hub
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = metrics
    app[TOKENS_KEY] = TokenCheck(parse_hashes(settings.dashboard_token_hashes))
    app[METRICS_TOKENS_KEY] = metrics_access.parse_hashes(settings.metrics_token_hashes)
    app.router.add_get("/", static)
    app.router.add_get("/signin", signin_page)
    app.router.add_post("/signin", signin)
    app.router.add_post("/signout", signout)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/snapshot", api_snapshot)
    app.router.add_get(r"/api/towns/{town:\d{6,12}}/reserve", api_reserve)
    app.router.add_post("/api/verify", api_verify)
    app.router.add_get(r"/api/towns/{town:\d{6,12}}/statement.csv", api_statement)
    app.router.add_get("/events", events)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        yield
        await hub.stop()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(hub.close_streams)
    return app


def serve(settings: DashboardSettings) -> None:
    if not settings.dashboard_token_hashes:
        log.warning("RELIEF_DASHBOARD_TOKEN_HASHES is empty: nobody can open the dashboard")
    web.run_app(
        build_app(settings),
        host=settings.dashboard_host,
        port=settings.dashboard_port,
        access_log=None,
        shutdown_timeout=SHUTDOWN_S,
        print=lambda text: log.info("%s", text),
    )
