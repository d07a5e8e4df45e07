"""Public disclosure of expenditure-type relief (P7, section 十) — pure.

P7: expenditure-type recipients and amounts are published within N working days of the
approval (`Policy.disclosure_working_days`, 10 by default; working days from
`schemas/workdays.py`); urgent cases are not published; personal data stays confidential
except what must be published. So a list row holds the case id, the masked name (the
first character and ＊, masked at intake's door), the category, the amount approved, who
approved it and when — never an ID number, a household ref, a reason or any free text.

A case is on the list of the month (China Standard Time) of its first approval. It is
published once a DisclosurePublished of its town and month was recorded after its
approval; the publish-by date is the approval's date plus N working days, or unknown
when the calendar does not cover it (never guessed).
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from schemas.envelope import to_cst
from schemas.money import FEN_PER_YUAN
from schemas.workdays import CalendarNotConfigured, WorkingCalendar

MAX_LIST_ROWS = 10_000  # cases on one town's list for one month, at most
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

CATEGORY_ZH = {
    "serious_illness": "大病重病",
    "education": "子女教育",
    "emergency": "应急救助",
    "transitional_living": "过渡期生活救助",
    "temporary_hardship": "临时生活困难救助",
}
LEVEL_ZH = {"town": "镇（街道）审批", "county": "县民政局审批"}


def period_of(moment: datetime) -> str:
    """The disclosure period of an approval: its month in China Standard Time."""
    return to_cst(moment).strftime("%Y-%m")


def publish_by(calendar: WorkingCalendar, approved_at: datetime, working_days: int) -> date | None:
    """P7: the approval's date (CST) plus N working days; None when the calendar does
    not cover those days."""
    try:
        return calendar.add_working_days(to_cst(approved_at).date(), working_days)
    except CalendarNotConfigured:
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Approved:
    """An approved expenditure-type case as the casebook holds it (what the list may show,
    and the first publication that covers it)."""

    case_id: str
    public_name: str | None
    category: str | None
    approved_fen: int
    approver_level: str | None
    approved_at: datetime
    published_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    case_id: str
    public_name: str  # "张＊＊"; "（未登记）" when the request carried no name
    category: str | None
    amount_fen: int
    amount_yuan: str  # "1234.56"
    approver_level: str | None
    approved_on: date  # CST
    publish_by: date | None  # None: the calendar does not cover it
    published: bool
    published_on: date | None


NO_NAME = "（未登记）"


def yuan_plain(fen: int) -> str:
    whole, cents = divmod(fen, FEN_PER_YUAN)
    return f"{whole}.{cents:02d}"


def rows(cases: Iterable[Approved], calendar: WorkingCalendar, working_days: int) -> list[Row]:
    out = []
    for c in cases:
        out.append(
            Row(
                case_id=c.case_id,
                public_name=c.public_name or NO_NAME,
                category=c.category,
                amount_fen=c.approved_fen,
                amount_yuan=yuan_plain(c.approved_fen),
                approver_level=c.approver_level,
                approved_on=to_cst(c.approved_at).date(),
                publish_by=publish_by(calendar, c.approved_at, working_days),
                published=c.published_at is not None,
                published_on=None if c.published_at is None else to_cst(c.published_at).date(),
            )
        )
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Overdue:
    overdue: int  # past the publish-by date, not published
    undated: int  # not published, and the calendar does not cover its publish-by date


def overdue(
    approvals: Iterable[datetime], calendar: WorkingCalendar, working_days: int, today: date
) -> Overdue:
    """Of the approval moments of unpublished cases: how many are past their publish-by
    date on `today` (CST), and how many cannot be dated."""
    late = undated = 0
    for at in approvals:
        due = publish_by(calendar, at, working_days)
        if due is None:
            undated += 1
        elif today > due:
            late += 1
    return Overdue(late, undated)


# ---------------------------------------------------------------- CSV

CSV_HEADER = (
    "case_id",
    "name",
    "category",
    "amount_yuan",
    "amount_fen",
    "approver_level",
    "approved_on",
    "publish_by",
    "published",
)


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with = + - @ (or a tab or
    carriage return) gets a leading apostrophe (OWASP "CSV injection")."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(listed: Sequence[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for r in listed:
        writer.writerow(
            [
                safe_cell(r.case_id),
                safe_cell(r.public_name),
                safe_cell(r.category),
                r.amount_yuan,
                r.amount_fen,
                safe_cell(r.approver_level),
                r.approved_on.isoformat(),
                "" if r.publish_by is None else r.publish_by.isoformat(),
                "yes" if r.published else "no",
            ]
        )
    return out.getvalue()


# ---------------------------------------------------------------- the page (Chinese)


def page(town: str, town_name: str, period: str, working_days: int, listed: Sequence[Row]) -> str:
    """The list as a plain page in Chinese, for a notice board or a town's website."""
    e = html.escape
    body_rows = "\n".join(
        "<tr>"
        f"<td>{e(r.case_id)}</td><td>{e(r.public_name)}</td>"
        f"<td>{e(CATEGORY_ZH.get(r.category or '', r.category or '—'))}</td>"
        f'<td class="n">{e(r.amount_yuan)}</td>'
        f"<td>{e(LEVEL_ZH.get(r.approver_level or '', r.approver_level or '—'))}</td>"
        f"<td>{r.approved_on.isoformat()}</td>"
        f"<td>{'—' if r.publish_by is None else r.publish_by.isoformat()}</td>"
        f"<td>{'已公示' if r.published else '未公示'}</td>"
        "</tr>"
        for r in listed
    )
    if not listed:
        body_rows = '<tr><td colspan="8">本期无支出型救助公示事项</td></tr>'
    total = yuan_plain(sum(r.amount_fen for r in listed))
    year, month = period.split("-")
    title = f"{e(town_name)}{int(year)}年{int(month)}月临时救助（支出型）公示名单"
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:.3em .6em}}td.n{{text-align:right}}</style>
</head><body>
<h1>{title}</h1>
<p>根据桓政字〔2021〕7号第十条及有关规定，支出型临时救助对象、救助金额于审批后{working_days}个工作日内予以公示；急难型救助不予公示。
姓名仅显示姓氏，不公开身份证号码等个人信息。</p>
<table>
<thead><tr><th>编号</th><th>姓名</th><th>救助类别</th><th>救助金额（元）</th><th>审批层级</th><th>审批日期</th><th>公示截止日期</th><th>公示状态</th></tr></thead>
<tbody>
{body_rows}
</tbody>
<tfoot><tr><td colspan="3">共 {len(listed)} 户</td><td class="n">{total}</td>
<td colspan="4"></td></tr></tfoot>
</table>
<p>镇（街道）代码 {e(town)}。如有异议，请向镇（街道）或县民政局反映。</p>
</body></html>
"""
