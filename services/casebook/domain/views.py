"""What the casebook answers over HTTP (and what its clients read back): plain models."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

from services.casebook.domain.submissions import SubmissionStatus

MAX_STORY = 1_000  # decisions in one case's story at most
MAX_DEADLINES = 1_000  # open deadlines listed per town at most
MAX_OPEN_CASES = 10_000  # unpaid advances listed at most
MAX_SUBMISSION_DECISIONS = 100  # decisions one record causes (a handful in practice)
MAX_CASE_LIST = 500  # cases one list answer holds at most
MAX_LIST_STATUSES = 13  # every CaseStatus at most


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class DecisionEntry(_View):
    """A decision on the case, with the rule and the figures it used (docs/design.md rule 6) and,
    for refusals and rejections, its written reasons (P9)."""

    event_id: uuid.UUID
    type: str
    rule: str
    case_status: str | None
    occurred_at: datetime
    recorded_at: datetime | None
    causation_id: uuid.UUID | None
    amount_fen: int | None
    figures: dict[str, int | str]
    reason: str | None = None


class DeadlineView(_View):
    case_id: str
    kind: str  # relief_24h (R5) or paperwork_5d (P1)
    due_at: datetime  # as the grant states it
    state: str  # open, warned, met, breached, void
    warned: bool = False


class CaseStory(_View):
    """A case of one town: where it stands, its money and deadlines, and every decision."""

    town: str
    case_id: str
    status: str
    funded_by: str | None
    category: str | None  # what the request registered, as its first decision says
    urgency: str | None
    requested_fen: int | None
    incident_id: str | None
    granted_fen: int
    paid_fen: int
    recovery_fen: int
    opened_at: datetime
    updated_at: datetime
    granted_at: datetime | None
    deadlines: list[DeadlineView]
    decisions: list[DecisionEntry]


class OpenCase(_View):
    """An urgent advance not yet paid or cancelled, with its 24-hour deadline as the
    decisions stand (`relief_state`: open, warned, or breached once a tick judged it)."""

    town: str
    case_id: str
    status: str  # advanced (the town reserve) or escalated (the county fund)
    funded_by: str | None
    granted_fen: int
    granted_at: datetime | None
    relief_due_at: datetime | None
    relief_state: str | None


class TownOpen(_View):
    open: int  # unpaid urgent advances
    breached: int  # of which the 24-hour deadline was breached (R5)


class OpenCases(_View):
    total: int
    cases: list[OpenCase]  # the oldest, up to the limit asked
    by_town: dict[str, TownOpen] = {}  # every one counted, whatever the limit


class SubmissionView(_View):
    """What became of a record intake accepted (its event id is in the 202)."""

    event_id: uuid.UUID
    status: SubmissionStatus
    town: str | None = None
    type: str | None = None
    correlation_id: str | None = None
    reason: str | None = None  # rejected: why, ID numbers masked
    decisions: list[DecisionEntry] = []


class CaseSummary(_View):
    """A case in a list: where it stands, its money, its 24-hour deadline, and the rule
    and figures of its latest decision (what a person deciding it needs to see, P9)."""

    town: str
    case_id: str
    status: str
    category: str | None
    urgency: str | None
    incident_id: str | None
    funded_by: str | None
    requested_fen: int | None
    granted_fen: int
    paid_fen: int
    opened_at: datetime
    updated_at: datetime
    relief_due_at: datetime | None
    relief_state: str | None
    last_type: str
    last_rule: str
    last_figures: dict[str, int | str]


class CaseList(_View):
    total: int  # every case that matched, whatever the limit
    cases: list[CaseSummary]  # the newest first, up to the limit


class DisclosureRowView(_View):
    """One approved expenditure-type case as the public may see it (P7): no ID number,
    household ref, reason or free text."""

    case_id: str
    public_name: str  # "张＊＊"
    category: str | None
    amount_fen: int
    amount_yuan: str
    approver_level: str | None  # town or county (P2)
    approved_on: date  # China Standard Time
    publish_by: date | None  # approval + N working days; None: calendar not configured
    published: bool
    published_on: date | None


class DisclosureListView(_View):
    town: str
    period: str  # YYYY-MM
    working_days: int  # N of P7
    calendar_until: date  # the last day the working-day calendar covers
    count: int
    total_fen: int
    rows: list[DisclosureRowView]


class HardshipFollowUpView(_View):
    """Civil affairs' written decision on a row (section 二, P9)."""

    event_id: uuid.UUID
    outcome: str  # case_opened, no_relief_needed or referred
    case_id: str | None
    referred_to: str | None
    reasons: str
    decided_by: str
    org: str
    decided_at: datetime


class HardshipRowView(_View):
    """A row of a department's list: the household by its keyed hash (never an ID
    number), the category of section 二, the department's note, and what became of it."""

    list_event_id: uuid.UUID
    row_index: int
    town: str
    household_ref: str
    category: str
    note: str
    department: str
    pushed_by: str  # the pushing token's organisation
    pushed_at: datetime
    follow_up: HardshipFollowUpView | None  # None: waiting


class HardshipRows(_View):
    total: int  # every row that matched, whatever the limit
    rows: list[HardshipRowView]
