"""How figures are shown to a person: yuan with two decimals, Chinese dates in Huantai's
time, the 24-hour countdown, and every code the service uses in Chinese with English
beside it. Pure: the moment `now` is passed in.

Money stays integer fen until here (docs/design.md "money is integer fen").
"""

from __future__ import annotations

from datetime import date, datetime

from schemas.envelope import to_cst
from schemas.money import yuan

# (Chinese, English) for every code a page shows; an unknown code is shown as it is.
LABELS: dict[str, tuple[str, str]] = {
    # roles
    "town": ("镇（街道）", "town"),
    "emergency_bureau": ("县应急管理局", "emergency bureau"),
    "civil_affairs": ("县民政局", "civil affairs"),
    "finance": ("县财政局", "finance"),
    "auditor": ("审计", "auditor"),
    "department": ("部门", "department"),
    # case status (schemas.decisions.CaseStatus)
    "advanced": ("已先行救助，待付款", "advanced, to be paid"),
    "escalated": ("县级资金垫付，待付款", "county fund, to be paid"),
    "paid": ("已付款", "paid"),
    "cancelled": ("已撤销", "cancelled"),
    "awaiting_approval": ("待县级审批", "awaiting approval"),
    "deliberation": ("一事一议", "deliberation"),
    "approved": ("已批准", "approved"),
    "rejected": ("不予救助", "rejected"),
    "reviewed": ("已复核", "reviewed"),
    "transitional": ("过渡期生活救助", "transitional relief"),
    "refused": ("不予受理", "refused"),
    "referred": ("转回原籍", "referred"),
    # relief categories
    "emergency": ("应急救助", "emergency relief"),
    "transitional_living": ("过渡期生活救助", "transitional living"),
    "temporary_hardship": ("临时生活困难救助", "temporary hardship"),
    "serious_illness": ("重特大疾病", "serious illness"),
    "education": ("教育支出", "education"),
    "urgent": ("急难型", "urgent"),
    "expenditure": ("支出型", "expenditure"),
    # incidents
    "traffic": ("交通事故", "traffic"),
    "fire": ("火灾", "fire"),
    "drowning": ("溺水", "drowning"),
    "workplace": ("生产安全事故", "workplace"),
    "natural_disaster": ("自然灾害", "natural disaster"),
    "other_accident": ("其他意外", "other accident"),
    "flood": ("洪涝", "flood"),
    "storm": ("风暴", "storm"),
    "earthquake": ("地震", "earthquake"),
    "landslide": ("滑坡", "landslide"),
    "drought": ("干旱", "drought"),
    "hail": ("冰雹", "hail"),
    "other": ("其他", "other"),
    # reviews and payments
    "confirmed": ("确认", "confirmed"),
    "top_up": ("补足", "top up"),
    "ineligible": ("不符合条件（追回）", "ineligible (recovered)"),
    "fraud": ("骗取（追回并罚款）", "fraud (recovered, fined)"),
    "bank": ("银行转账", "bank transfer"),
    "cash": ("现金", "cash"),
    # deadlines
    "relief_24h": ("24小时内先行救助", "relief within 24 h"),
    "paperwork_5d": ("5日内补齐手续", "paperwork within 5 days"),
    "open": ("未到期", "open"),
    "warned": ("已预警", "warned"),
    "met": ("已按时", "met"),
    "breached": ("已超时", "breached"),
    "void": ("已作废", "void"),
    # funding
    "town_reserve": ("镇储备金", "town reserve"),
    "county_fund": ("县级资金", "county fund"),
    # submissions
    "pending": ("处理中", "pending"),
    "decided": ("已决定", "decided"),
    # hardship lists (section 二): the recipients' types, and civil affairs' follow-up
    "minimum_living": ("低保", "minimum living allowance"),
    "extreme_poverty": ("特困", "extreme poverty"),
    "registered_poor": ("建档立卡贫困户", "registered poor"),
    "disaster_urgent": ("受灾急难群众", "disaster-struck, urgent"),
    "vagrant": ("流浪乞讨人员", "vagrant"),
    "disabled": ("残疾人", "disabled"),
    "continuing_expenditure": ("持续性支出家庭", "continuing expenditure"),
    "elderly_women_children": ("困境老人、妇女、儿童", "elderly, women, children in difficulty"),
    "legal_case": ("涉案人员", "people in legal cases"),
    "left_behind": ("“三留守”人员", "three left-behind groups"),
}

# civil affairs' follow-up of a hardship row (section 二): its own words ("referred" is
# also a case's status, R7, with another meaning)
FOLLOW_UPS: dict[str, tuple[str, str]] = {
    "case_opened": ("已立案救助", "case opened"),
    "no_relief_needed": ("经核实无需救助", "no relief needed"),
    "referred": ("转介其他部门", "referred elsewhere"),
}

# P7: who approved a case on the disclosure list (P2: a town below its authority)
APPROVER_LEVELS: dict[str, tuple[str, str]] = {
    "town": ("镇（街道）审批", "approved by the town"),
    "county": ("县民政局审批", "approved by the county"),
}

# The disclosure list's columns as the casebook names them, each with its heading
# (Chinese, English); the casebook's plain `amount_yuan` duplicates `amount_fen`.
DISCLOSURE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("case_id", "编号", "case"),
    ("public_name", "姓名", "name"),
    ("category", "救助类别", "category"),
    ("amount_fen", "救助金额", "amount"),
    ("approver_level", "审批层级", "approved by"),
    ("approved_on", "审批日期", "approved on"),
    ("publish_by", "公示截止", "publish by"),
    ("published", "公示状态", "published"),
)

# decision types, as a person reads them
DECISIONS: dict[str, tuple[str, str]] = {
    "AdvanceGranted": ("先行救助已批准", "advance granted"),
    "AdvanceRefused": ("先行救助不予批准", "advance refused"),
    "AdvanceVoided": ("先行救助已作废", "advance voided"),
    "EscalatedToCountyFund": ("转县级资金垫付", "escalated to the county fund"),
    "ReliefPaid": ("已付款", "relief paid"),
    "ReliefApproved": ("已批准", "relief approved"),
    "ReliefRejected": ("不予救助", "relief rejected"),
    "ApprovalRequired": ("需县级审批", "approval required"),
    "DeliberationRequired": ("需一事一议", "deliberation required"),
    "DeadlineWarned": ("期限预警", "deadline warned"),
    "DeadlineMet": ("按期完成", "deadline met"),
    "DeadlineBreached": ("超期", "deadline breached"),
    "RecoveryClaimed": ("追回", "recovery claimed"),
    "ReserveLow": ("储备金不足预警", "reserve low"),
    "ReserveFunded": ("储备金已注资", "reserve funded"),
    "ReserveReplenished": ("储备金已补足", "reserve replenished"),
    "ReplenishmentRefused": ("补足不予办理", "replenishment refused"),
    "ReferredToOriginCounty": ("转回原籍", "referred to origin county"),
    "TransitionalInstalmentPaid": ("过渡期救助已发放", "transitional instalment paid"),
    "TransitionalReliefExtended": ("过渡期救助已延长", "transitional relief extended"),
    "InstalmentDue": ("分期到期", "instalment due"),
    "PaperworkCompleted": ("手续已补齐", "paperwork completed"),
}


def zh(code: str | None) -> str:
    if code is None:
        return "—"
    return LABELS.get(code, DECISIONS.get(code, (code, code)))[0]


def en(code: str | None) -> str:
    if code is None:
        return ""
    return LABELS.get(code, DECISIONS.get(code, (code, code)))[1]


def money(fen: int | None) -> str:
    """Fen as yuan with two decimals: 123456 -> "¥1,234.56"."""
    if fen is None:
        return "—"
    return f"¥{yuan(fen)}"


def date_zh(moment: datetime | None) -> str:
    """A moment as a Chinese date and time in Huantai (CST): "2025年7月20日 14:05"."""
    if moment is None:
        return "—"
    at = to_cst(moment)
    return f"{at.year}年{at.month}月{at.day}日 {at.hour:02d}:{at.minute:02d}"


def day_zh(day: date | str | None) -> str:
    """A calendar day in Chinese: "2026年7月20日" (a date, or its ISO text as JSON has it)."""
    if day is None or day == "":
        return "—"
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day[:10])
        except ValueError:
            return str(day)
    return f"{day.year}年{day.month}月{day.day}日"


def countdown(due: datetime | None, now: datetime) -> tuple[str, str]:
    """What is left until `due` as (text, urgency class): "还剩 5小时12分" / "超时 1小时3分"."""
    if due is None:
        return ("—", "")
    left_s = int((due - now).total_seconds())
    minutes = abs(left_s) // 60
    text = f"{minutes // 60}小时{minutes % 60:02d}分"
    if left_s < 0:
        return (f"已超时 {text}", "late")
    return (f"还剩 {text}", "soon" if left_s < 4 * 3600 else "ok")
