"""The console: web pages for the people who use the service — the bureau, the towns,
civil affairs and finance — in Chinese first with English beside it.

Server-rendered Jinja2 pages with htmx (vendored in static/: no network at run time).
Every write goes to intake and every personal read is made through intake with the
person's own token, so intake authorises the page exactly as it authorises the API (a
town sees only its town). The token is exchanged at sign-in for a cookie (HttpOnly,
SameSite=Strict, Secure): never in a URL. A form's answer is swapped into the page, and
the page asks what became of the submission until it is decided or rejected.

Composition: `create_app(settings, upstream=...)`.
"""

import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile as StarletteUpload

from relief_platform import metrics_access
from schemas.envelope import CST
from schemas.intake import MAX_HARDSHIP_ROWS
from schemas.towns import County, load_county
from services.console.adapters.upstream import Answer, Me, Unreachable, Upstream
from services.console.domain import forms, show
from services.console.settings import ConsoleSettings

log = logging.getLogger("relief.console")

HERE = Path(__file__).resolve().parent
COOKIE = "relief_session"
MAX_TOKEN_CHARS = 512
TOWN = r"^[0-9]{6,12}$"
CASE = r"^[0-9A-Za-z_.:\-]{1,64}$"
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
OPEN_STATUSES = ("advanced", "escalated")
INBOX_STATUSES = ("awaiting_approval", "deliberation", "paid")
HARDSHIP_ROWS_SHOWN = 200  # rows waiting for a follow-up on the inbox, the oldest first
HARDSHIP_DONE_SHOWN = 50  # rows followed up, the latest first
HOME = {
    "emergency_bureau": "/bureau",
    "civil_affairs": "/civil-affairs",
    "finance": "/finance",
    "auditor": "/finance",
}


class Denied(Exception):
    """A page the person may not see (403), or a sign-in needed (401)."""

    def __init__(self, status: int, zh: str, en: str) -> None:
        super().__init__(en)
        self.status = status
        self.zh = zh
        self.en = en


class Session:
    def __init__(self, token: str, me: Me) -> None:
        self.token = token
        self.me = me

    def may_see_town(self, town: str) -> bool:
        return self.me.role != "town" or self.me.town == town


def create_app(
    settings: ConsoleSettings | None = None, *, upstream: Upstream | None = None
) -> FastAPI:
    settings = settings or ConsoleSettings()
    county: County = load_county(settings.policy_file)
    up = upstream or Upstream(
        settings.console_intake_url,
        settings.casebook_url,
        settings.casebook_token,
        settings.console_dashboard_url,
        settings.console_upstream_timeout_s,
        settings.console_principal_ttl_s,
        settings.console_principal_cache_max,
    )
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.globals.update(
        zh=show.zh, en=show.en, money=show.money, date_zh=show.date_zh, day_zh=show.day_zh
    )
    env.globals["disclosure_columns"] = show.DISCLOSURE_COLUMNS
    env.globals["approver_levels"] = show.APPROVER_LEVELS
    env.globals["follow_ups"] = show.FOLLOW_UPS
    env.globals["towns"] = county.towns
    env.globals["new_key"] = lambda: str(uuid.uuid4())
    env.globals["town_name"] = lambda code: _town_name(county, code)
    env.globals["dashboard_url"] = (
        settings.console_dashboard_public_url or settings.console_dashboard_url
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await up.close()

    app = FastAPI(
        title="Huantai relief console",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry=metrics_access.NO_TELEMETRY,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def now() -> datetime:
        return datetime.now(UTC)

    def today() -> date:
        return now().astimezone(CST).date()

    def page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            name,
            {"now": now(), "countdown": lambda due: show.countdown(due, now()), **ctx},
            status_code=status,
            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
        )

    @app.exception_handler(Denied)
    async def _denied(request: Request, exc: Denied) -> Response:
        if exc.status == 401 and not request.headers.get("HX-Request"):
            return RedirectResponse("/signin", 303)
        return page(request, "error.html", exc.status, zh=exc.zh, en=exc.en)

    @app.exception_handler(Unreachable)
    async def _unreachable(request: Request, exc: Unreachable) -> Response:
        log.warning("upstream: %s", exc)
        return page(request, "error.html", 503, zh="服务暂时无法连接，请稍后重试", en=str(exc))

    async def session(request: Request) -> Session:
        token = request.cookies.get(COOKIE)
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise Denied(401, "请先登录", "sign in first")
        me = await up.me(token)
        if me is None:
            raise Denied(401, "登录已失效，请重新登录", "the token is no longer valid")
        return session_of(token, me)

    def session_of(token: str, me: Me) -> Session:
        return Session(token, me)

    def same_origin(request: Request) -> None:
        # SameSite=Strict keeps the cookie off other sites' requests; an Origin that is
        # not ours is refused as well
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host", ""):
            raise Denied(403, "请求来源不符", "cross-site request refused")

    Signed = Annotated[Session, Depends(session)]
    Town = Annotated[str, PathParam(pattern=TOWN)]
    CaseId = Annotated[str, PathParam(pattern=CASE)]

    def town_of(s: Session, town: str) -> None:
        if town not in county:
            raise Denied(404, "没有这个镇（街道）", f"no town {town}")
        if not s.may_see_town(town):
            # policy: a town acts and reads only for itself (docs/contracts.md)
            raise Denied(403, "只能查看本镇（街道）的信息", "a town sees only its own town")

    async def read(s: Session, path: str, params: Any = None) -> Any:
        answer = await up.read(s.token, path, params)
        if answer.status in (401, 403):
            raise Denied(answer.status, "无权查看", answer.detail())
        if answer.status == 404:
            raise Denied(404, "没有找到", answer.detail())
        if not answer.ok:
            raise Unreachable(f"intake answered {answer.status}: {answer.detail()}")
        return answer.body

    # -------------------------------------------------------- sign-in

    @app.get("/signin", response_class=HTMLResponse)
    async def signin_page(request: Request) -> HTMLResponse:
        return page(request, "signin.html")

    @app.post("/signin")
    async def signin(
        request: Request, token: Annotated[str, Form(max_length=MAX_TOKEN_CHARS)] = ""
    ) -> Response:
        same_origin(request)
        me = await up.me(token.strip()) if token.strip() else None
        if me is None:
            return page(request, "signin.html", 401, problem=True)
        response = RedirectResponse(HOME.get(me.role, f"/towns/{me.town}" if me.town else "/"), 303)
        response.set_cookie(
            COOKIE,
            token.strip(),
            max_age=settings.console_session_s,
            httponly=True,
            secure=settings.console_cookie_secure,
            samesite="strict",
            path="/",
        )
        return response

    @app.post("/signout")
    async def signout(request: Request) -> Response:
        same_origin(request)
        response = RedirectResponse("/signin", 303)
        response.delete_cookie(
            COOKIE,
            path="/",
            httponly=True,
            secure=settings.console_cookie_secure,
            samesite="strict",
        )
        return response

    @app.get("/")
    async def home(s: Signed) -> Response:
        if s.me.role == "town" and s.me.town:
            return RedirectResponse(f"/towns/{s.me.town}", 303)
        return RedirectResponse(HOME.get(s.me.role, "/disclosures"), 303)

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    # -------------------------------------------------------- towns (R5, R4)

    @app.get("/towns/{town}", response_class=HTMLResponse)
    async def town_page(request: Request, town: Town, s: Signed) -> HTMLResponse:
        town_of(s, town)
        reserve = await read(s, f"/v1/towns/{town}/reserve")
        cases = await read(s, "/v1/cases", [("town", town), ("limit", "200")])
        return page(
            request,
            "town.html",
            s=s,
            town=town,
            reserve=_dates(reserve),
            cases=_parse_cases(cases),
            open_cases=[c for c in _parse_cases(cases) if c["status"] in OPEN_STATUSES],
            idem=str(uuid.uuid4()),
        )

    @app.get("/towns/{town}/open", response_class=HTMLResponse)
    async def town_open(request: Request, town: Town, s: Signed) -> HTMLResponse:
        town_of(s, town)
        params = [("town", town), ("limit", "200"), *[("status", x) for x in OPEN_STATUSES]]
        cases = _parse_cases(await read(s, "/v1/cases", params))
        return page(request, "_open_cases.html", s=s, town=town, open_cases=cases)

    @app.get("/towns/{town}/cases/{case_id}", response_class=HTMLResponse)
    async def case_page(request: Request, town: Town, case_id: CaseId, s: Signed) -> HTMLResponse:
        town_of(s, town)
        case = await read(s, f"/v1/towns/{town}/cases/{case_id}")
        return page(
            request,
            "case.html",
            s=s,
            town=town,
            case=_dates(case),
            idem=str(uuid.uuid4()),
            idem2=str(uuid.uuid4()),
        )

    @app.post("/check-id", response_class=HTMLResponse)
    async def check_id(
        request: Request, s: Signed, household_head_id: Annotated[str, Form(max_length=64)] = ""
    ) -> HTMLResponse:
        # the number is checked where it is typed (GB 11643) and never logged or stored
        text = household_head_id.strip()
        problem = forms.check_id(text, today()) if text else None
        return page(request, "_idhint.html", text=text, problem=problem)

    # -------------------------------------------------------- writes

    async def submit(
        request: Request,
        s: Signed,
        path: str,
        parse: Callable[[Mapping[str, str]], dict[str, Any]],
        form_id: str,
    ) -> HTMLResponse:
        same_origin(request)
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        # every write carries an Idempotency-Key (intake requires one): the form's own,
        # made when the form was drawn, so a double submission is one record
        key = fields.get("idem") or ""
        if not re.fullmatch(r"^[0-9a-f\-]{36}$", key):
            key = str(uuid.uuid4())
        try:
            body = parse(fields)
        except forms.FormInvalid as exc:
            return page(request, "_outcome.html", problems=exc.problems, form_id=form_id)
        answer = await up.write(s.token, path, body, key)
        return outcome(request, answer, form_id)

    def outcome(request: Request, answer: Answer, form_id: str) -> HTMLResponse:
        if answer.ok:
            return page(
                request,
                "_outcome.html",
                accepted=_dates(answer.body),
                form_id=form_id,
                fresh=str(uuid.uuid4()),
            )
        problems: list[forms.Problem] = []
        if (
            answer.status == 422
            and isinstance(answer.body, dict)
            and isinstance(answer.body.get("detail"), list)
        ):
            for e in answer.body["detail"]:
                problems.append(
                    forms.Problem(forms.field_of(e.get("loc", [])), "", str(e.get("msg", "")))
                )
        refused = None if problems else answer.detail()
        return page(
            request,
            "_outcome.html",
            problems=problems,
            refused=refused,
            status=answer.status,
            form_id=form_id,
        )

    async def upload_text(request: Request) -> str:
        form = await request.form()
        up_file = form.get("household_file")
        if isinstance(up_file, (UploadFile, StarletteUpload)) and up_file.filename:
            raw = await up_file.read(forms.MAX_UPLOAD_BYTES + 1)
            if len(raw) > forms.MAX_UPLOAD_BYTES:
                raise forms.FormInvalid(
                    [forms.Problem("household_file", "文件太大", "file too large")]
                )
            return raw.decode("utf-8-sig", errors="replace")
        return ""

    @app.post("/towns/{town}/cases", response_class=HTMLResponse)
    async def register(request: Request, town: Town, s: Signed) -> HTMLResponse:
        town_of(s, town)
        return await submit(
            request, s, "/v1/cases", lambda f: forms.register_case(f, town, today()), "register"
        )

    @app.post("/towns/{town}/cases/{case_id}/payments", response_class=HTMLResponse)
    async def pay(request: Request, town: Town, case_id: CaseId, s: Signed) -> HTMLResponse:
        town_of(s, town)
        return await submit(
            request,
            s,
            f"/v1/cases/{case_id}/payments",
            lambda f: forms.confirm_payment(f, town),
            "pay",
        )

    @app.post("/towns/{town}/cases/{case_id}/paperwork", response_class=HTMLResponse)
    async def paperwork(request: Request, town: Town, case_id: CaseId, s: Signed) -> HTMLResponse:
        town_of(s, town)
        return await submit(
            request,
            s,
            f"/v1/cases/{case_id}/paperwork",
            lambda f: forms.paperwork(f, town),
            "paperwork",
        )

    @app.post("/towns/{town}/cases/{case_id}/reviews", response_class=HTMLResponse)
    async def review(request: Request, town: Town, case_id: CaseId, s: Signed) -> HTMLResponse:
        return await submit(
            request,
            s,
            f"/v1/cases/{case_id}/reviews",
            lambda f: forms.review(f, town),
            f"review-{case_id}",
        )

    @app.post("/towns/{town}/cases/{case_id}/deliberations", response_class=HTMLResponse)
    async def deliberate(request: Request, town: Town, case_id: CaseId, s: Signed) -> HTMLResponse:
        return await submit(
            request,
            s,
            f"/v1/cases/{case_id}/deliberations",
            lambda f: forms.deliberation(f, town),
            f"deliberation-{case_id}",
        )

    async def incident_write(
        request: Request,
        s: Session,
        path: str,
        parse: Callable[[Mapping[str, str], str], dict[str, Any]],
        form_id: str,
    ) -> HTMLResponse:
        try:
            upload = await upload_text(request)
        except forms.FormInvalid as exc:
            return page(request, "_outcome.html", problems=exc.problems, form_id=form_id)
        return await submit(request, s, path, lambda f: parse(f, upload), form_id)

    @app.post("/bureau/incidents", response_class=HTMLResponse)
    async def report(request: Request, s: Signed) -> HTMLResponse:
        return await incident_write(
            request, s, "/v1/incidents", lambda f, u: forms.incident(f, u, today()), "incident"
        )

    def incident_path(form: Mapping[str, str], action: str) -> str:
        incident_id = (form.get("incident_id") or "").strip()
        if not re.fullmatch(CASE, incident_id):
            raise forms.FormInvalid(
                [forms.Problem("incident_id", "请填写事件编号", "the incident's id")]
            )
        return f"/v1/incidents/{incident_id}/{action}"

    @app.post("/bureau/updates", response_class=HTMLResponse)
    async def update(request: Request, s: Signed) -> HTMLResponse:
        fields = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        try:
            path = incident_path(fields, "updates")
        except forms.FormInvalid as exc:
            return page(request, "_outcome.html", problems=exc.problems, form_id="incident-update")
        return await incident_write(
            request, s, path, lambda f, u: forms.incident_update(f, u, today()), "incident-update"
        )

    @app.post("/bureau/closes", response_class=HTMLResponse)
    async def close(request: Request, s: Signed) -> HTMLResponse:
        fields = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        try:
            path = incident_path(fields, "close")
        except forms.FormInvalid as exc:
            return page(request, "_outcome.html", problems=exc.problems, form_id="incident-update")
        return await submit(request, s, path, forms.incident_close, "incident-update")

    @app.post("/finance/reserves/{town}/{movement}", response_class=HTMLResponse)
    async def move(
        request: Request,
        town: Town,
        movement: Annotated[str, PathParam(pattern=r"^(fundings|replenishments)$")],
        s: Signed,
    ) -> HTMLResponse:
        return await submit(
            request, s, f"/v1/towns/{town}/reserve/{movement}", forms.move_reserve, "reserve"
        )

    @app.get("/submissions/{event_id}", response_class=HTMLResponse)
    async def submission(
        request: Request, event_id: uuid.UUID, s: Signed, n: int = 0
    ) -> HTMLResponse:
        answer = await up.read(s.token, f"/v1/submissions/{event_id}")
        body = answer.body if answer.ok else {"status": "pending"}
        return page(
            request, "_submission.html", sub=_dates(body), event_id=event_id, n=min(n, 1000)
        )

    # -------------------------------------------------------- bureau (R1)

    @app.get("/bureau", response_class=HTMLResponse)
    async def bureau(request: Request, s: Signed, incident: str | None = None) -> HTMLResponse:
        if s.me.role not in ("emergency_bureau", "civil_affairs", "finance", "auditor"):
            raise Denied(403, "应急管理局的页面", "the bureau's page")
        by_town: list[dict[str, Any]] = []
        if incident and re.fullmatch(CASE, incident):
            cases = _parse_cases(
                await read(s, "/v1/cases", [("incident_id", incident), ("limit", "500")])
            )
            rows: dict[str, dict[str, Any]] = {}
            for c in cases:
                row = rows.setdefault(
                    c["town"],
                    {"town": c["town"], "cases": 0, "open": 0, "granted_fen": 0, "paid_fen": 0},
                )
                row["cases"] += 1
                row["open"] += c["status"] in OPEN_STATUSES
                row["granted_fen"] += c["granted_fen"]
                row["paid_fen"] += c["paid_fen"]
            by_town = sorted(rows.values(), key=lambda r: r["town"])
        return page(
            request,
            "bureau.html",
            s=s,
            incident=incident,
            by_town=by_town,
            idem=str(uuid.uuid4()),
            idem2=str(uuid.uuid4()),
        )

    # -------------------------------------------------------- civil affairs (P2, R6, P9)

    @app.get("/civil-affairs", response_class=HTMLResponse)
    async def civil(request: Request, s: Signed) -> HTMLResponse:
        if s.me.role not in ("civil_affairs", "auditor"):
            raise Denied(403, "民政局的页面", "civil affairs' page")
        params = [("limit", "200"), *[("status", x) for x in INBOX_STATUSES]]
        cases = _parse_cases(await read(s, "/v1/cases", params))
        groups = {st: [c for c in cases if c["status"] == st] for st in INBOX_STATUSES}
        # section 二: the casebook's rows of departments' lists; the inbox stands without
        # them when the casebook does not answer
        waiting = await hardship_rows("waiting", HARDSHIP_ROWS_SHOWN)
        done = await hardship_rows("followed_up", HARDSHIP_DONE_SHOWN)
        return page(
            request,
            "civil.html",
            s=s,
            groups=groups,
            idem=str(uuid.uuid4()),
            hardship=waiting,
            hardship_done=done,
        )

    async def hardship_rows(state: str, limit: int) -> dict[str, Any] | None:
        try:
            answer = await up.hardship_rows(state, limit)
        except Unreachable as exc:
            log.warning("hardship rows: %s", exc)
            return None
        if not answer.ok or not isinstance(answer.body, dict):
            log.warning("hardship rows: the casebook answered %s", answer.status)
            return None
        body: dict[str, Any] = _dates(answer.body)
        return body

    @app.post("/civil-affairs/hardship/{town}/{list_event_id}/{row}", response_class=HTMLResponse)
    async def follow_up(
        request: Request,
        town: Town,
        list_event_id: uuid.UUID,
        row: Annotated[int, PathParam(ge=0, lt=MAX_HARDSHIP_ROWS)],
        s: Signed,
    ) -> HTMLResponse:
        return await submit(
            request,
            s,
            f"/v1/hardship-lists/{list_event_id}/rows/{row}/follow-ups",
            lambda f: forms.hardship_follow_up(f, town),
            f"hardship-{list_event_id}-{row}",
        )

    @app.post("/civil-affairs/cases", response_class=HTMLResponse)
    async def register_expenditure(request: Request, s: Signed) -> HTMLResponse:
        return await submit(
            request,
            s,
            "/v1/cases",
            lambda f: forms.register_expenditure(f, today()),
            "expenditure",
        )

    # -------------------------------------------------------- finance (P10, P11, P7)

    @app.get("/finance", response_class=HTMLResponse)
    async def finance(request: Request, s: Signed) -> HTMLResponse:
        if s.me.role not in ("finance", "auditor", "civil_affairs"):
            raise Denied(403, "财政局的页面", "finance's page")
        last_month = (today().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        return page(
            request,
            "finance.html",
            s=s,
            period=today().strftime("%Y-%m"),
            last_month=last_month,
            today=today().isoformat(),
            idem=str(uuid.uuid4()),
        )

    @app.get("/finance/snapshot", response_class=HTMLResponse)
    async def snapshot(request: Request, s: Signed) -> HTMLResponse:
        answer = await up.snapshot(s.token)
        data = answer.body.get("data") if answer.ok and isinstance(answer.body, dict) else None
        return page(request, "_snapshot.html", data=data, status=answer.status)

    @app.post("/finance/verify", response_class=HTMLResponse)
    async def verify(request: Request, s: Signed) -> HTMLResponse:
        same_origin(request)
        answer = await up.verify(s.token)
        return page(
            request,
            "_verify.html",
            report=_dates(answer.body) if answer.ok else None,
            status=answer.status,
            detail=answer.detail(),
        )

    @app.get("/finance/statement")
    async def statement(
        request: Request, s: Signed, town: str = "", start: str = "", end: str = ""
    ) -> Response:
        if not re.fullmatch(TOWN, town) or town not in county:
            raise Denied(422, "请选择镇（街道）", "choose a town")
        try:
            first, last = date.fromisoformat(start), date.fromisoformat(end)
        except ValueError:
            raise Denied(422, "日期格式为 年-月-日", "dates as YYYY-MM-DD") from None
        answer = await up.statement(s.token, town, first.isoformat(), last.isoformat())
        if not answer.ok:
            raise Denied(
                answer.status if answer.status in (400, 401, 403) else 503,
                "对账单无法生成",
                answer.detail(),
            )
        return _download(answer, f"statement-{town}-{first}-{last}.csv")

    # -------------------------------------------------------- disclosure lists (P7)

    @app.get("/disclosures", response_class=HTMLResponse)
    @app.get("/disclosures/{town}", response_class=HTMLResponse)
    async def disclosures(
        request: Request, s: Signed, town: str | None = None, period: str = "", format: str = ""
    ) -> Response:
        town = town or s.me.town or county.codes()[0]
        if not re.fullmatch(TOWN, town):
            raise Denied(404, "没有这个镇（街道）", f"no town {town}")
        town_of(s, town)
        period = period if PERIOD.fullmatch(period) else today().strftime("%Y-%m")
        answer = await up.disclosure(
            town, period, format == "csv", s.me.town if s.me.role == "town" else None
        )
        if format == "csv" and answer.ok:
            return _download(answer, f"disclosure-{town}-{period}.csv")
        available = answer.ok
        return page(
            request,
            "disclosure.html",
            s=s,
            town=town,
            period=period,
            available=available,
            rows=_rows(answer.body) if available else [],
            status=answer.status,
        )

    return app


def _town_name(county: County, code: str | None) -> str:
    if code is None or code not in county:
        return code or "—"
    t = county.town(code)
    return f"{t.name_zh}"


def _moment(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and "T" in value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _dates(data: Any) -> Any:
    """JSON with its ISO moments as datetimes (for date_zh and countdowns)."""
    if isinstance(data, dict):
        return {k: _dates(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_dates(v) for v in data]
    return _moment(data)


def _parse_cases(body: Any) -> list[dict[str, Any]]:
    cases = body.get("cases", []) if isinstance(body, dict) else []
    return [_dates(c) for c in cases if isinstance(c, dict)]


def _rows(body: Any) -> list[dict[str, Any]]:
    """A disclosure list's rows, whatever key holds them."""
    if isinstance(body, list):
        return [r for r in body if isinstance(r, dict)]
    if isinstance(body, dict):
        for key in ("rows", "entries", "items", "recipients", "cases"):
            if isinstance(body.get(key), list):
                return [r for r in body[key] if isinstance(r, dict)]
    return []


def _download(answer: Answer, name: str) -> Response:
    return Response(
        answer.raw,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


Handler = Callable[..., Awaitable[Response]]
