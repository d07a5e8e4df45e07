"""`relief`: the intake operations from a terminal, over the HTTP API.

The API is RELIEF_API_URL (default http://127.0.0.1:8080), the token RELIEF_TOKEN. Amounts
are typed and shown in yuan ("1,234.56"); the API itself speaks integer fen. Every write
sends an Idempotency-Key (given with --key, or a fresh one), so re-running a command with
the same --key is safe: the API returns the first answer and records nothing new.

A write is answered once Kafka holds it; the processor decides it a moment later. With
--wait a write then asks what became of it (GET /v1/submissions/{event_id}) until it is
decided or rejected, at most --wait-s seconds, and prints the outcome: exit 1 when it was
rejected, 3 when it is still pending at the end of the wait.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx

from schemas.money import MoneyError, fen_from_yuan_text, yuan

DEFAULT_API = "http://127.0.0.1:8080"
TIMEOUT_S = 60.0
# Bulk files are sent in pieces of this many rows (each piece is one request, with its
# own Idempotency-Key derived from --key), so the progress bar moves and no request is huge.
CSV_ROWS_PER_REQUEST = 500
# --wait: how often the submission is asked after, and for how long by default
WAIT_POLL_S = 0.5
WAIT_DEFAULT_S = 60.0
WAIT_MAX_S = 3_600.0
EXIT_REJECTED = 1
EXIT_STILL_PENDING = 3


class Api:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def _headers(self, key: str | None = None, content_type: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if key:
            headers["Idempotency-Key"] = key
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        key: str | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> Any:
        try:
            response = httpx.request(
                method,
                self.url + path,
                json=body,
                content=content,
                headers=self._headers(key, content_type),
                timeout=TIMEOUT_S,
            )
        except httpx.HTTPError as exc:
            raise click.ClickException(
                f"cannot reach the intake API at {self.url}: {exc}" + _retry_hint(key)
            ) from exc
        try:
            data = response.json()
        except ValueError:
            data = {"detail": response.text[:500]}
        if response.status_code >= 400 and not (
            response.status_code == 422 and isinstance(data, dict) and "rows" in data
        ):
            hint = _retry_hint(key) if response.status_code >= 500 else ""
            raise click.ClickException(
                _refusal(response.status_code, data, response.headers) + hint
            )
        return data


def _retry_hint(key: str | None) -> str:
    """After a failure whose outcome is unknown, how to retry without recording twice."""
    if key is None:
        return ""
    return (
        f"\nthe outcome is unknown; Idempotency-Key: {key}\n"
        f"retry safely with the same command and --key {key} (recorded at most once)"
    )


def _refusal(status: int, data: Any, headers: httpx.Headers) -> str:
    detail = data.get("detail") if isinstance(data, dict) else data
    if isinstance(detail, list):  # 422: one line per error, with its JSON path
        lines = [f"  {'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in detail]
        return f"refused ({status}):\n" + "\n".join(lines)
    text = f"refused ({status}): {detail}"
    if status == 503 and "Retry-After" in headers:
        text += f" (retry after {headers['Retry-After']} s)"
    return text


def _api(ctx: click.Context) -> Api:
    obj = ctx.find_object(Api)
    assert obj is not None  # set by main()
    return obj


def _fen(text: str, name: str) -> int:
    try:
        return fen_from_yuan_text(text)
    except MoneyError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


def _accepted(ctx: click.Context, data: dict[str, Any]) -> None:
    click.echo(
        f"recorded {data['type']} {data['correlation_id']} (town {data['town']}) "
        f"at {data['recorded_at']} — event {data['event_id']}, "
        f"partition {data['partition']} offset {data['offset']}"
    )
    wait_s = ctx.meta.get("wait_s")
    if wait_s is not None:
        _wait_for(_api(ctx), str(data["event_id"]), float(wait_s))


def _decision_line(d: dict[str, Any]) -> str:
    text = f"  {d['occurred_at']}  {d['type']:<22} {d['rule']:<8}"
    if d.get("amount_fen") is not None:
        text += f" {yuan(d['amount_fen']):>12} yuan"
    if d.get("case_status"):
        text += f"  -> {d['case_status']}"
    if d.get("reason"):
        text += f"  ({d['reason']})"
    return text


def _wait_for(api: Api, event_id: str, wait_s: float) -> None:
    """Ask what became of the submission until it is decided or rejected (bounded)."""
    deadline = time.monotonic() + wait_s
    while True:
        answer = api.request("GET", f"/v1/submissions/{event_id}")
        status = answer.get("status")
        if status == "decided":
            decisions = answer.get("decisions", [])
            n = len(decisions)
            click.echo(
                f"decided: {n} decision{'' if n == 1 else 's'}" if n else "decided: recorded"
            )
            for d in decisions:
                click.echo(_decision_line(d))
            return
        if status == "rejected":
            click.echo(f"rejected: {answer.get('reason')}")
            sys.exit(EXIT_REJECTED)
        if time.monotonic() >= deadline:
            click.echo(
                f"still pending after {wait_s:g} s (ask again: relief submission {event_id})"
            )
            sys.exit(EXIT_STILL_PENDING)
        time.sleep(WAIT_POLL_S)


def _set_wait(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if param.name == "wait" and value:
        ctx.meta.setdefault("wait_s", WAIT_DEFAULT_S)
    elif param.name == "wait_s" and value is not None:
        ctx.meta["wait_s"] = value


def wait_option(f: Any) -> Any:
    """--wait and --wait-s on a write (kept in the context, not in each signature)."""
    f = click.option(
        "--wait-s",
        type=click.FloatRange(0, WAIT_MAX_S),
        default=None,
        expose_value=False,
        callback=_set_wait,
        help=f"with --wait: how long at most [{WAIT_DEFAULT_S:g}]",
    )(f)
    return click.option(
        "--wait",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_wait,
        help="wait until the processor decided or rejected it, and print the outcome",
    )(f)


key_option = click.option(
    "--key", default=None, help="Idempotency-Key (default: a fresh one); reuse it to retry safely"
)
town_option = click.option(
    "--town", envvar="RELIEF_TOWN", required=True, help="town code (default: RELIEF_TOWN)"
)


def file_options(f: Any) -> Any:
    """--file and --report on a command that can send many at once (POST /v1/bulk)."""
    f = click.option(
        "--report",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="with --file: the per-line report (CSV; .ndjson for NDJSON) "
        "[default: FILE.report.csv]",
    )(f)
    return click.option(
        "--file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="send every line of this file (NDJSON bodies, or CSV with the options' names "
        "as columns) in one stream. Each line's Idempotency-Key is derived from the file's "
        "content and the line's number (or from --key and the line's number), so running "
        "the same file again is safe: lines already recorded answer their first answer, "
        "nothing is recorded twice. Exit 1 if a line was rejected, 3 if a line's outcome is "
        "unknown (run the same file again).",
    )(f)


@click.group()
@click.option(
    "--api",
    envvar="RELIEF_API_URL",
    default=DEFAULT_API,
    show_default=True,
    help="intake API (RELIEF_API_URL)",
)
@click.option("--token", envvar="RELIEF_TOKEN", default=None, help="bearer token (RELIEF_TOKEN)")
@click.pass_context
def main(ctx: click.Context, api: str, token: str | None) -> None:
    """Huantai relief: report incidents, register and settle cases, move reserves."""
    ctx.obj = Api(api, token)


def _key(key: str | None) -> str:
    return key or f"cli-{uuid.uuid4()}"


# ---------------------------------------------------------------- incidents


@main.group()
def incident() -> None:
    """Incidents (emergency bureau; R1)."""


@incident.command("report")
@town_option
@click.option("--id", "incident_id", required=True)
@click.option(
    "--kind",
    required=True,
    type=click.Choice(
        ["traffic", "fire", "drowning", "workplace", "natural_disaster", "other_accident"]
    ),
)
@click.option("--subtype", default=None, help="for natural_disaster: flood, storm, ...")
@click.option("--description", default="")
@click.option("--dead", type=int, default=0)
@click.option("--injured", type=int, default=0)
@click.option("--household-head-id", "ids", multiple=True, help="repeat for each household")
@key_option
@wait_option
@click.pass_context
def incident_report(
    ctx: click.Context,
    town: str,
    incident_id: str,
    kind: str,
    subtype: str | None,
    description: str,
    dead: int,
    injured: int,
    ids: tuple[str, ...],
    key: str | None,
) -> None:
    body = {
        "town": town,
        "incident_id": incident_id,
        "kind": kind,
        "disaster_subtype": subtype,
        "description": description,
        "casualties": {"dead": dead, "injured": injured},
        "household_head_ids": list(ids),
    }
    _accepted(ctx, _api(ctx).request("POST", "/v1/incidents", body=body, key=_key(key)))


@incident.command("update")
@town_option
@click.argument("incident_id")
@click.option("--dead", type=int, default=None)
@click.option("--injured", type=int, default=None)
@click.option("--household-head-id", "ids", multiple=True)
@click.option("--note", default="")
@key_option
@wait_option
@click.pass_context
def incident_update(
    ctx: click.Context,
    town: str,
    incident_id: str,
    dead: int | None,
    injured: int | None,
    ids: tuple[str, ...],
    note: str,
    key: str | None,
) -> None:
    body: dict[str, Any] = {"town": town, "household_head_ids_added": list(ids), "note": note}
    if dead is not None or injured is not None:
        body["casualties"] = {"dead": dead or 0, "injured": injured or 0}
    _accepted(
        ctx,
        _api(ctx).request("POST", f"/v1/incidents/{incident_id}/updates", body=body, key=_key(key)),
    )


@incident.command("close")
@town_option
@click.argument("incident_id")
@click.option("--note", default="")
@key_option
@wait_option
@click.pass_context
def incident_close(
    ctx: click.Context, town: str, incident_id: str, note: str, key: str | None
) -> None:
    _accepted(
        ctx,
        _api(ctx).request(
            "POST",
            f"/v1/incidents/{incident_id}/close",
            body={"town": town, "note": note},
            key=_key(key),
        ),
    )


# ---------------------------------------------------------------- cases


@main.group()
def case() -> None:
    """Relief cases (towns: urgent, R5; civil affairs: expenditure-type, R3)."""


@case.command("register")
@town_option
@click.option("--case-id", default=None)
@click.option(
    "--urgency", type=click.Choice(["urgent", "expenditure"]), default="urgent", show_default=True
)
@click.option(
    "--category",
    type=click.Choice(
        ["emergency", "transitional_living", "temporary_hardship", "serious_illness", "education"]
    ),
    help="required without --file",
)
@click.option(
    "--household-head-id", help="resident ID (hashed at the door); required without --file"
)
@click.option(
    "--yuan", "amount", help="amount requested, e.g. 800 or 1,234.50; required without --file"
)
@click.option("--reason", help="required without --file")
@click.option("--persons", type=int, default=1, show_default=True)
@click.option("--incident-id", default=None)
@file_options
@key_option
@wait_option
@click.pass_context
def case_register(
    ctx: click.Context,
    town: str,
    case_id: str | None,
    urgency: str,
    category: str | None,
    household_head_id: str | None,
    amount: str | None,
    reason: str | None,
    persons: int,
    incident_id: str | None,
    file: Path | None,
    report: Path | None,
    key: str | None,
) -> None:
    """Register a case; with --file, every case of a file (NDJSON bodies or CSV)."""
    if file is not None:
        defaults = {"town": town, "urgency": urgency, "persons": persons}
        _send_file(ctx, file, report, key, "register_case", defaults)
        return
    missing = [
        name
        for name, value in (
            ("--category", category),
            ("--household-head-id", household_head_id),
            ("--yuan", amount),
            ("--reason", reason),
        )
        if value is None
    ]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or give --file)")
    assert amount is not None
    body = {
        "town": town,
        "case_id": case_id,
        "urgency": urgency,
        "category": category,
        "household_head_id": household_head_id,
        "requested_fen": _fen(amount, "--yuan"),
        "reason": reason,
        "persons": persons,
        "incident_id": incident_id,
    }
    _accepted(ctx, _api(ctx).request("POST", "/v1/cases", body=body, key=_key(key)))


@case.command("pay")
@town_option
@click.argument("case_id")
@click.option("--yuan", "amount", required=True)
@click.option("--bank-reference", default=None)
@click.option("--cash", "cash_reason", default=None, help="paid in cash, and why (P9)")
@key_option
@wait_option
@click.pass_context
def case_pay(
    ctx: click.Context,
    town: str,
    case_id: str,
    amount: str,
    bank_reference: str | None,
    cash_reason: str | None,
    key: str | None,
) -> None:
    """Confirm a payment (R5: before the 24-hour deadline)."""
    body = {
        "town": town,
        "amount_fen": _fen(amount, "--yuan"),
        "method": "cash" if cash_reason is not None else "bank",
        "bank_reference": bank_reference,
        "cash_reason": cash_reason,
    }
    _accepted(
        ctx, _api(ctx).request("POST", f"/v1/cases/{case_id}/payments", body=body, key=_key(key))
    )


@case.command("paperwork")
@town_option
@click.argument("case_id")
@click.option("--note", default="")
@key_option
@wait_option
@click.pass_context
def case_paperwork(ctx: click.Context, town: str, case_id: str, note: str, key: str | None) -> None:
    """Paperwork completed (P1: within 5 days)."""
    _accepted(
        ctx,
        _api(ctx).request(
            "POST",
            f"/v1/cases/{case_id}/paperwork",
            body={"town": town, "note": note},
            key=_key(key),
        ),
    )


@case.command("cancel")
@town_option
@click.argument("case_id")
@click.option("--reason", required=True)
@key_option
@wait_option
@click.pass_context
def case_cancel(ctx: click.Context, town: str, case_id: str, reason: str, key: str | None) -> None:
    _accepted(
        ctx,
        _api(ctx).request(
            "POST",
            f"/v1/cases/{case_id}/cancellation",
            body={"town": town, "reason": reason},
            key=_key(key),
        ),
    )


@case.command("review")
@town_option
@click.argument("case_id")
@click.option(
    "--outcome", required=True, type=click.Choice(["confirmed", "top_up", "ineligible", "fraud"])
)
@click.option("--approved-yuan", default=None, help="the case's final worth (0 if recovered)")
@click.option("--top-up-yuan", default=None)
@click.option("--fine-multiple", type=click.IntRange(1, 3), default=None)
@click.option("--reasons", default="")
@key_option
@wait_option
@click.pass_context
def case_review(
    ctx: click.Context,
    town: str,
    case_id: str,
    outcome: str,
    approved_yuan: str | None,
    top_up_yuan: str | None,
    fine_multiple: int | None,
    reasons: str,
    key: str | None,
) -> None:
    approved = _fen(approved_yuan, "--approved-yuan") if approved_yuan not in (None, "0") else 0
    body = {
        "town": town,
        "outcome": outcome,
        "approved_fen": approved,
        "top_up_fen": _fen(top_up_yuan, "--top-up-yuan") if top_up_yuan else None,
        "fine_multiple": fine_multiple,
        "reasons": reasons,
    }
    _accepted(
        ctx, _api(ctx).request("POST", f"/v1/cases/{case_id}/reviews", body=body, key=_key(key))
    )


@case.command("deliberate")
@town_option
@click.argument("case_id")
@click.option("--approve-yuan", default=None)
@click.option("--refuse", is_flag=True)
@click.option("--reasons", required=True)
@key_option
@wait_option
@click.pass_context
def case_deliberate(
    ctx: click.Context,
    town: str,
    case_id: str,
    approve_yuan: str | None,
    refuse: bool,
    reasons: str,
    key: str | None,
) -> None:
    """Decide a deliberation (R6: 一事一议)."""
    body = {
        "town": town,
        "refused": refuse,
        "reasons": reasons,
        "approved_fen": _fen(approve_yuan, "--approve-yuan") if approve_yuan else None,
    }
    _accepted(
        ctx,
        _api(ctx).request("POST", f"/v1/cases/{case_id}/deliberations", body=body, key=_key(key)),
    )


@case.command("show")
@town_option
@click.argument("case_id")
@click.pass_context
def case_show(ctx: click.Context, town: str, case_id: str) -> None:
    """A case of a town: where it stands, its money, deadlines and every decision."""
    data = _api(ctx).request("GET", f"/v1/towns/{town}/cases/{case_id}")
    click.echo(
        f"case {data['case_id']} (town {data['town']}): {data['status']} — "
        f"granted {yuan(data['granted_fen'])} yuan, paid {yuan(data['paid_fen'])} yuan"
        + (f", funded by {data['funded_by']}" if data.get("funded_by") else "")
    )
    for d in data["deadlines"]:
        click.echo(f"  deadline {d['kind']:<12} due {d['due_at']}  {d['state']}")
    for d in data["decisions"]:
        click.echo(_decision_line(d))


@main.command()
@click.argument("event_id")
@click.option("--wait", "wait", is_flag=True, help="until it is decided or rejected")
@click.option("--wait-s", type=click.FloatRange(0, WAIT_MAX_S), default=WAIT_DEFAULT_S)
@click.pass_context
def submission(ctx: click.Context, event_id: str, wait: bool, wait_s: float) -> None:
    """What became of a write (the event id it was recorded under): pending, decided
    with its decisions, or rejected with the reason."""
    if wait:
        _wait_for(_api(ctx), event_id, wait_s)
        return
    answer = _api(ctx).request("GET", f"/v1/submissions/{event_id}")
    click.echo(f"{answer['status']}" + (f": {answer['reason']}" if answer.get("reason") else ""))
    for d in answer.get("decisions", []):
        click.echo(_decision_line(d))


# ---------------------------------------------------------------- reserves


@main.group()
def reserve() -> None:
    """Town reserves (R4; finance: P10, P11)."""


@reserve.command("show")
@town_option
@click.pass_context
def reserve_show(ctx: click.Context, town: str) -> None:
    data = _api(ctx).request("GET", f"/v1/towns/{town}/reserve")
    click.echo(
        f"town {town} reserve: {yuan(data['available_fen'])} yuan available, "
        f"{yuan(data['held_fen'])} held, size {yuan(data['size_fen'])}"
    )
    for m in data["movements"]:
        click.echo(
            f"  {m['occurred_at']}  {m['kind']:<24} {yuan(m['change_fen']):>14}"
            f"  -> {yuan(m['balance_fen'])}"
        )


@reserve.command("replenish")
@town_option
@click.option("--yuan", "amount", required=True)
@key_option
@wait_option
@click.pass_context
def reserve_replenish(ctx: click.Context, town: str, amount: str, key: str | None) -> None:
    _accepted(
        ctx,
        _api(ctx).request(
            "POST",
            f"/v1/towns/{town}/reserve/replenishments",
            body={"amount_fen": _fen(amount, "--yuan")},
            key=_key(key),
        ),
    )


@reserve.command("fund")
@town_option
@click.option("--yuan", "amount", required=True)
@key_option
@wait_option
@click.pass_context
def reserve_fund(ctx: click.Context, town: str, amount: str, key: str | None) -> None:
    _accepted(
        ctx,
        _api(ctx).request(
            "POST",
            f"/v1/towns/{town}/reserve/fundings",
            body={"amount_fen": _fen(amount, "--yuan")},
            key=_key(key),
        ),
    )


@main.command()
@town_option
@click.pass_context
def deadlines(ctx: click.Context, town: str) -> None:
    """Open deadlines of a town (R5, P1)."""
    for d in _api(ctx).request("GET", f"/v1/towns/{town}/deadlines"):
        click.echo(f"  {d['due_at']}  {d['kind']:<12} {d['state']:<7} {d['case_id']}")


# ---------------------------------------------------------------- bulk
#
# POST /v1/bulk (issue 14): many commands in one stream, one NDJSON line each, every line
# answered on its own. The CLI sends a file in pieces of BULK_LINES_PER_REQUEST lines (a
# half-duplex HTTP client sends its whole body before it reads: a piece's answers must
# fit in the sockets' buffers meanwhile), each line with a key derived from the file.

BULK_LINES_PER_REQUEST = 2_000
BULK_PROBLEMS_SHOWN = 20
EXIT_UNKNOWN = 3
NDJSON = "application/x-ndjson"
# CSV columns that are not text in the API's body
_CSV_YUAN = {"yuan": "requested_fen"}
_CSV_INTEGERS = frozenset({"persons"})


class _FileLine:
    """One line of the file: its number, and the command line to send or why not."""

    def __init__(self, number: int, command: str | None, problem: str | None = None) -> None:
        self.number = number
        self.command = command
        self.problem = problem


def _file_prefix(path: Path, key: str | None) -> str:
    if key is not None:
        return key
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"file-{digest.hexdigest()[:20]}"


def _csv_body(row: dict[str | Any, str | Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A CSV row (the single command's option names as columns) as the API's body; raises
    click.BadParameter naming the column."""
    body: dict[str, Any] = dict(defaults)
    for column, cell in row.items():
        if column is None or cell is None:
            raise click.BadParameter("more cells than columns", param_hint="row")
        name = str(column).strip().replace("-", "_")
        text = str(cell).strip()
        if not text:
            continue
        if name in _CSV_YUAN:
            body[_CSV_YUAN[name]] = _fen(text, name)
        elif name in _CSV_INTEGERS:
            try:
                body[name] = int(text)
            except ValueError:
                raise click.BadParameter(
                    f"not a whole number: {text[:20]!r}", param_hint=name
                ) from None
        else:
            body[name] = text
    return body


def _command_lines(
    path: Path, kind: str | None, defaults: dict[str, Any], prefix: str
) -> Iterator[_FileLine]:
    """The file's lines as bulk command lines. `kind` None: the file holds command lines
    already (`relief bulk`); else each line is a body of that kind (NDJSON or CSV)."""
    if kind is not None and path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            start = 2
            for row in reader:
                number, start = start, reader.line_num + 1
                try:
                    body = _csv_body(row, defaults)
                except click.BadParameter as exc:
                    yield _FileLine(number, None, f"{exc.param_hint}: {exc.message}")
                    continue
                line = {"type": kind, "idempotency_key": f"{prefix}:{number}", "body": body}
                yield _FileLine(number, json.dumps(line, ensure_ascii=False))
        return
    with path.open(encoding="utf-8-sig") as fh:
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield _FileLine(number, None, f"malformed JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(value, dict):
                yield _FileLine(number, None, "a line is a JSON object")
                continue
            if kind is not None:
                value = {"type": kind, "body": {**defaults, **value}}
            value.setdefault("idempotency_key", f"{prefix}:{number}")
            yield _FileLine(number, json.dumps(value, ensure_ascii=False))


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def _send_file(
    ctx: click.Context,
    path: Path,
    report: Path | None,
    key: str | None,
    kind: str | None,
    defaults: dict[str, Any],
) -> None:
    api = _api(ctx)
    prefix = _file_prefix(path, key)
    report = report or path.with_name(path.name + ".report.csv")
    results: list[dict[str, Any]] = []
    piece: list[_FileLine] = []

    with httpx.Client(timeout=TIMEOUT_S) as http:

        def send(lines: list[_FileLine]) -> None:
            to_send = [x for x in lines if x.command is not None]
            for x in lines:
                if x.command is None:
                    results.append({"line": x.number, "status": 422, "error": x.problem})
            if not to_send:
                return
            body = "".join(f"{x.command}\n" for x in to_send).encode("utf-8")
            try:
                response = http.post(
                    api.url + "/v1/bulk",
                    content=body,
                    headers=api._headers(content_type=NDJSON),
                )
            except httpx.HTTPError as exc:
                why = f"no answer from {api.url}: {type(exc).__name__}"
                results.extend({"line": x.number, "status": 503, "error": why} for x in to_send)
                return
            if response.status_code != 200:
                try:
                    data = response.json()
                except ValueError:
                    data = {"detail": response.text[:500]}
                if response.status_code < 500:  # the whole request refused: every piece would be
                    raise click.ClickException(
                        _refusal(response.status_code, data, response.headers)
                    )
                why = _refusal(response.status_code, data, response.headers)
                results.extend({"line": x.number, "status": 503, "error": why} for x in to_send)
                return
            answers = [json.loads(t) for t in response.text.splitlines() if t.strip()]
            # the answer numbers the lines of this request: back to the file's numbers
            for answer in answers:
                answer["line"] = to_send[int(answer["line"]) - 1].number
            results.extend(answers)
            answered = {int(a["line"]) for a in answers}
            results.extend(
                {"line": x.number, "status": 503, "error": "no answer for this line"}
                for x in to_send
                if x.number not in answered
            )

        total = _count_lines(path)
        with click.progressbar(length=total, label=f"sending {path.name}", file=sys.stderr) as bar:
            done = 0
            for line in _command_lines(path, kind, defaults, prefix):
                piece.append(line)
                if len(piece) >= BULK_LINES_PER_REQUEST:
                    send(piece)
                    bar.update(line.number - done)
                    done, piece = line.number, []
            if piece:
                send(piece)
            bar.update(total - done)

    results.sort(key=lambda r: int(r["line"]))
    _write_report(report, results)
    accepted = [r for r in results if 200 <= int(r["status"]) < 300]
    unknown = [r for r in results if int(r["status"]) >= 500]
    rejected = [r for r in results if 400 <= int(r["status"]) < 500]
    replayed = sum(1 for r in accepted if r.get("replayed"))
    click.echo(
        f"{len(accepted)} accepted, {len(rejected)} rejected, {len(unknown)} unknown"
        + (f" ({replayed} replayed: recorded before)" if replayed else "")
        + f" — report {report}, keys {prefix}:LINE"
    )
    for r in (rejected + unknown)[:BULK_PROBLEMS_SHOWN]:
        click.echo(f"  line {r['line']}: {_problem_text(r)} ({r['status']})")
    if len(rejected) + len(unknown) > BULK_PROBLEMS_SHOWN:
        click.echo(f"  ... and more in {report}")
    if unknown:
        click.echo(
            "the outcome of some lines is unknown: run the same command on the same file "
            "again (the same keys: recorded at most once)"
        )
        sys.exit(EXIT_UNKNOWN)
    if rejected:
        sys.exit(EXIT_REJECTED)


def _problem_text(result: dict[str, Any]) -> str:
    """`column: what` for a refused line (the body's fields are the file's columns)."""
    detail = result.get("detail")
    if isinstance(detail, list) and detail:
        parts = []
        for d in detail:
            loc = [str(p) for p in d.get("loc", [])]
            where = ".".join(loc[1:] if loc[:1] == ["body"] else loc)
            if where == "requested_fen":
                where = "yuan (requested_fen)"
            parts.append(f"{where}: {d.get('msg')}" if where else str(d.get("msg")))
        return "; ".join(parts)
    return str(result.get("error", ""))


REPORT_COLUMNS = ("line", "status", "event_id", "correlation_id", "replayed", "error")


def _write_report(path: Path, results: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        if path.suffix.lower() in (".ndjson", ".jsonl"):
            for r in results:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            return
        writer = csv.writer(fh)
        writer.writerow(REPORT_COLUMNS)
        for r in results:
            error = _problem_text(r) if int(r["status"]) >= 300 else ""
            writer.writerow(
                [
                    r["line"],
                    r["status"],
                    r.get("event_id", ""),
                    r.get("correlation_id", ""),
                    "yes" if r.get("replayed") else "",
                    _csv_cell(error),
                ]
            )


def _csv_cell(text: str) -> str:
    # a spreadsheet runs a cell that starts with = + - @
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


@main.command("bulk")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the per-line report (CSV; .ndjson for NDJSON) [default: FILE.report.csv]",
)
@click.option(
    "--key",
    default=None,
    help="prefix of the lines' keys (default: derived from the file's content)",
)
@click.pass_context
def bulk(ctx: click.Context, file: Path, report: Path | None, key: str | None) -> None:
    """Send a file of commands (NDJSON: one {"type", "path", "body"} per line, as POST
    /v1/bulk takes them) with a progress bar; write a per-line report; print the summary.

    A line without an idempotency_key gets one derived from the file's content (or --key)
    and its line number, so running the same file again is safe: what was recorded
    answers its first answer and nothing is recorded twice. Exit 1 if a line was
    rejected, 3 if a line's outcome is unknown (run the same file again)."""
    _send_file(ctx, file, report, key, None, {})


@main.command()
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@key_option
@click.pass_context
def hardship(ctx: click.Context, csv_file: Path, key: str | None) -> None:
    """Upload a department's list of suspected hardship cases (section 二).

    CSV header: town,household_head_id,category[,note]. Sent in pieces with a progress
    bar; each row is reported, accepted or with what was wrong."""
    lines = csv_file.read_text(encoding="utf-8-sig").splitlines()
    if len(lines) < 2:
        raise click.ClickException("the file has no rows after its header")
    header, rows = lines[0], [r for r in lines[1:] if r.strip()]
    base = _key(key)
    accepted = rejected = 0
    problems: list[str] = []
    pieces = range(0, len(rows), CSV_ROWS_PER_REQUEST)
    with click.progressbar(length=len(rows), label="uploading", file=sys.stderr) as bar:
        for piece, start in enumerate(pieces):
            chunk = rows[start : start + CSV_ROWS_PER_REQUEST]
            data = _api(ctx).request(
                "POST",
                "/v1/hardship-lists",
                key=f"{base}:{piece}",
                content_type="text/csv",
                content=("\n".join([header, *chunk]) + "\n").encode("utf-8"),
            )
            accepted += data["accepted"]
            rejected += data["rejected"]
            for r in data["rows"]:
                if not r["accepted"]:
                    line = start + r["line"]  # the line in the whole file
                    problems += [
                        f"  line {line}: {e['column']}: {e['message']}" for e in r["errors"]
                    ]
            bar.update(len(chunk))
    click.echo(f"{accepted} rows accepted, {rejected} rejected (key {base})")
    for p in problems:
        click.echo(p)
    if rejected:
        sys.exit(1 if accepted == 0 else 0)


# ---------------------------------------------------------------- operations


@main.group()
def token() -> None:
    """Intake API tokens (only their SHA-256 is stored)."""


@token.command("add")
@click.option(
    "--role",
    required=True,
    type=click.Choice(
        ["emergency_bureau", "town", "civil_affairs", "finance", "department", "auditor"]
    ),
)
@click.option("--org", required=True, help="the organisation, e.g. 索镇街道办事处")
@click.option("--town", default=None, help="the town code (role town only)")
@click.option("--holder", default=None, help="the person who holds it (named on their decisions)")
@click.option(
    "--file",
    "path",
    envvar="RELIEF_INTAKE_TOKENS_FILE",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="tokens file (RELIEF_INTAKE_TOKENS_FILE); .json or TOML",
)
def token_add(role: str, org: str, town: str | None, holder: str | None, path: Path) -> None:
    """Add a token: prints it once; the file keeps only its hash."""
    from pydantic import ValidationError

    from services.intake.domain.tokens import (
        Principal,
        json_document,
        new_token,
        parse_tokens,
        token_hash,
        toml_entry,
    )

    secret = new_token()
    try:
        principal = Principal(
            sha256=token_hash(secret), role=role, org=org, town=town, holder=holder
        )
    except ValidationError as exc:
        raise click.ClickException("; ".join(e["msg"] for e in exc.errors())) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        existing = parse_tokens(path.read_text("utf-8"), "json") if path.exists() else {}
        text = json_document([*existing.values(), principal])
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # a reader never sees half a file
    else:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(("\n" if path.stat().st_size else "") + toml_entry(principal))
    os.chmod(path, 0o600)
    click.echo(f"added a {role} token for {org} to {path}; it is shown only now:", err=True)
    click.echo(secret)


@main.command()
@click.option(
    "--bootstrap", envvar="RELIEF_KAFKA_BOOTSTRAP", default="127.0.0.1:19092", show_default=True
)
@click.option("--partitions", type=click.IntRange(1, 1_000), default=6, show_default=True)
@click.option("--replication-factor", type=click.IntRange(1, 10), default=1, show_default=True)
def topics(bootstrap: str, partitions: int, replication_factor: int) -> None:
    """Create the service's topics on a cluster (existing ones are left as they are)."""
    from relief_platform.topics import ensure_topics

    created = asyncio.run(ensure_topics(bootstrap, partitions, replication_factor))
    click.echo(json.dumps({"created": created}) if created else "all topics exist already")


if __name__ == "__main__":
    main()
