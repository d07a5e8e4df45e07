"""What the processor remembers, sized by what is open, never by history.

All of a town's records land on one partition (keyed by town), so one worker owns a
town's state at a time and the reserve rule needs no locks (docs/design.md "keyed by town").
That state is not one value but many small ones, each under its own key in the town's
partition (`book.py` names the keys):

| value          | one per                          | leaves when                               |
|----------------|----------------------------------|-------------------------------------------|
| `TownState`    | town                             | never (bounded: figures and counters)     |
| `Case`         | open case                        | it is finished (`Case.finished`)          |
| `CaseMark`     | finished case                    | `CASE_MARK_RETENTION` after it finished   |
| `GrantMark`    | person and cause granted (P6)    | its case's finished mark leaves           |
| `IncidentMark` | incident reported in the town    | `INCIDENT_RETENTION` after it closed      |
| `AppliedMark`  | command applied (its event id)   | `APPLIED_RETENTION` after it was applied  |
| wheel bucket   | minute with something due        | that minute has passed                    |

A finished case's facts live on in the decisions topic and the read side; here it
leaves only a small mark so that a late command about it gets a clear answer.

Every value has a stated upper size (`MAX_VALUE_BYTES`), held by the bounds of its
model's fields and proved by a unit test against the largest value each model allows
(tests/unit/emergency/test_sizes.py): Kafka refuses a changelog record over 1 MB, and a
refused changelog record stops a worker for good.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from schemas.decisions import CaseStatus as CaseStatus  # re-exported: the domain names it
from schemas.envelope import MAX_ID_TEXT
from services.emergency.domain.deadlines import Deadline, DeadlineState
from services.emergency.domain.reserve import Reserve

# A limit on everything (STYLE), tables included.
MAX_VALUE_BYTES = 16 * 1024  # any one stored value, JSON-encoded (Kafka's limit is 1 MB)
MAX_OPEN_CASES_PER_TOWN = 1_000_000  # a refusal, not a crash, past it
MAX_OPEN_INCIDENTS_PER_TOWN = 10_000
MAX_CAUSE_KEY = 2 * MAX_ID_TEXT + 8  # "<person ref>|<category>|<incident id, '-' or '*'>"
# P6: the people a case's grant is marked for: the household (its head's ref) and up to
# schemas.intake.MAX_MEMBERS_PER_REQUEST + 1 members (the head among them).
MAX_CASE_PERSONS = 23

# How long marks are kept after what they remember (they leave through the wheel).
APPLIED_RETENTION = timedelta(days=7)  # a command retried later than this is new
CASE_MARK_RETENTION = timedelta(days=400)  # a case id is not reused within this
INCIDENT_RETENTION = timedelta(days=400)  # a closed incident is known this long
# P6: "one grant per cause per year in some counties": how long a grant blocks another.
DUPLICATE_WINDOW = timedelta(days=365)
# P5: a finished transitional schedule can still be extended for this long.
TRANSITIONAL_GRACE = timedelta(days=30)


# Statuses after which nothing more is decided about the case but its open deadlines.
_CLOSED_STATUSES = (CaseStatus.CANCELLED, CaseStatus.REJECTED, CaseStatus.REVIEWED)
_UNPAID_URGENT = (CaseStatus.ADVANCED, CaseStatus.ESCALATED)

Id = str  # bounded by the records they come from (schemas.envelope.MAX_ID_TEXT)


class Case(BaseModel):
    """One open case: its figures, its deadlines and where its money is held."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str = Field(max_length=MAX_ID_TEXT)
    request_id: str = Field(max_length=36)  # the ReliefRequested's event id: root of derived ids
    town: str = Field(max_length=12)
    household_ref: str = Field(max_length=MAX_ID_TEXT)
    category: str = Field(max_length=32)
    urgency: str = Field(max_length=32)
    cause_key: str = Field(max_length=MAX_CAUSE_KEY)  # P6: "<category>|<incident or '-'>"
    # P6: the household and its members (keyed hashes) whose grant for the cause this is
    persons: tuple[str, ...] = Field(default=(), max_length=MAX_CASE_PERSONS)
    # P6 across towns: the county's claims stage marked its persons (claims.py); ending
    # the case without relief releases them there
    claimed: bool = False
    requested_fen: int
    granted_fen: int = 0  # held or approved
    paid_fen: int = 0
    funded_by: str = Field(default="town_reserve", max_length=32)  # schemas.decisions.FundedBy
    status: CaseStatus
    received_at: datetime
    relief_deadline: Deadline | None = None  # R5: 24 h
    paperwork_deadline: Deadline | None = None  # P1: 5 days
    instalments_total: int = 0  # P5: months of transitional relief granted
    instalments_due: int = 0  # P5: fallen due and held on the county fund until paid
    instalments_paid: int = 0
    next_instalment_at: datetime | None = None
    instalment_fen: int = 0
    schedule_ended_at: datetime | None = None  # P5: the last instalment's time, once all are paid

    @property
    def deadlines_open(self) -> bool:
        return any(
            d is not None and d.is_open for d in (self.relief_deadline, self.paperwork_deadline)
        )

    def next_moment(self) -> datetime | None:
        """When time must look at the case next: a deadline's warning or due time, an
        instalment, the end of an ended schedule's grace (P5). The wheel holds only this
        moment; looking at the case then puts the one after it on the wheel."""
        moments = []
        for deadline in (self.relief_deadline, self.paperwork_deadline):
            if deadline is not None and deadline.is_open:
                opened = deadline.state is DeadlineState.OPEN
                moments.append(deadline.warn_at if opened else deadline.due_at)
        if self.next_instalment_at is not None:
            moments.append(self.next_instalment_at)
        elif self.status is CaseStatus.TRANSITIONAL and self.schedule_ended_at is not None:
            moments.append(self.schedule_ended_at + TRANSITIONAL_GRACE)
        return min(moments) if moments else None

    def finished(self, now: datetime) -> bool:
        """Nothing more can happen to the case: it leaves the hot state (its story lives on
        in the decisions topic). A paid advance waits for its review (rule 4); a running
        transitional schedule for its instalments and, for a while, an extension (P5)."""
        if self.deadlines_open:
            return False
        if self.status in _CLOSED_STATUSES:
            return True
        if self.status is CaseStatus.TRANSITIONAL and self.schedule_ended_at is not None:
            # (an instalment due and not yet paid keeps its money held, and the case open)
            return (
                now >= self.schedule_ended_at + TRANSITIONAL_GRACE
                and self.instalments_paid == self.instalments_due
            )
        return False

    def tally(self) -> Counts:
        """What this case adds to its town's counters (kept exact by the book)."""
        unpaid = self.status in _UNPAID_URGENT and self.relief_deadline is not None
        state = self.relief_deadline.state if self.relief_deadline is not None else None
        return Counts.model_construct(
            open_cases=1,
            urgent_unpaid=int(unpaid),
            urgent_warned=int(unpaid and state is DeadlineState.WARNED),
            urgent_overdue=int(unpaid and state is DeadlineState.BREACHED),
            awaiting_approval=int(self.status is CaseStatus.AWAITING_APPROVAL),
            in_deliberation=int(self.status is CaseStatus.DELIBERATION),
        )


class Counts(BaseModel):
    """A town's open work, counted as cases come and go (never by scanning them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    open_cases: int = 0
    urgent_unpaid: int = 0  # R5: the 24-hour clock runs
    urgent_warned: int = 0  # ... and the warning has gone out
    urgent_overdue: int = 0  # ... and the deadline was breached
    awaiting_approval: int = 0  # P2
    in_deliberation: int = 0  # R6

    def plus(self, other: Counts, sign: int = 1) -> Counts:
        # on the hot path (every change of a case): plain arithmetic, no validation
        # (tests/unit/emergency/test_counts.py: every field summed)
        return Counts.model_construct(
            open_cases=self.open_cases + sign * other.open_cases,
            urgent_unpaid=self.urgent_unpaid + sign * other.urgent_unpaid,
            urgent_warned=self.urgent_warned + sign * other.urgent_warned,
            urgent_overdue=self.urgent_overdue + sign * other.urgent_overdue,
            awaiting_approval=self.awaiting_approval + sign * other.awaiting_approval,
            in_deliberation=self.in_deliberation + sign * other.in_deliberation,
        )


class CaseMark(BaseModel):
    """A finished case: its id is not reused, and a late command about it is told why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(max_length=36)
    status: CaseStatus
    finished_at: datetime
    # P6: the grant of this case (if any) leaves with this mark, long after its window
    cause_key: str | None = Field(default=None, max_length=MAX_CAUSE_KEY)
    persons: tuple[str, ...] = Field(default=(), max_length=MAX_CASE_PERSONS)


class GrantMark(BaseModel):
    """P6: this household was granted relief for this cause; no second grant until expiry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str = Field(max_length=MAX_ID_TEXT)
    granted_at: datetime

    @property
    def expires_at(self) -> datetime:
        return self.granted_at + DUPLICATE_WINDOW


class IncidentMark(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    status: str = Field(max_length=16)  # "open" | "closed"
    closed_at: datetime | None = None
    # R2: an emergency period declared for the incident in this town, and its end (None:
    # until it is ended)
    emergency_from: datetime | None = None
    emergency_until: datetime | None = None

    def in_emergency(self, at: datetime) -> bool:
        """R2: does the emergency period run at `at`?"""
        if self.emergency_from is None or at < self.emergency_from:
            return False
        return self.emergency_until is None or at < self.emergency_until


class AppliedMark(BaseModel):
    """A command applied: the same event id again (a client's retry) changes nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    applied_at: datetime


class TownState(BaseModel):
    """One town's figures: its reserve, county money held for it, counters, its clock."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    town: str = Field(max_length=12)
    reserve: Reserve
    opened: bool = False  # the opening funding posting has been emitted
    county_held_fen: int = 0  # escalated advances held from the county fund
    county_paid_fen: int = 0
    clock: datetime | None = None  # the latest broker stamp seen on this town's partition
    low_alerted: bool = False  # a "reserve low" decision is out and not yet cleared
    counts: Counts = Counts()
    open_incidents: int = 0
    # The wheel (book.py): every minute before this one has been judged and dropped.
    wheel_minute: int | None = None

    @classmethod
    def new(cls, town: str, reserve_size_fen: int) -> TownState:
        return cls(town=town, reserve=Reserve.opened(reserve_size_fen))
