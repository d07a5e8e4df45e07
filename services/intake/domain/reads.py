"""What the read endpoints answer, and the `ReadSource` they are answered from.

Intake keeps no read model of its own and reads no other service's tables: cases,
deadlines and submissions come from the casebook, a town's reserve from the ledger,
each over HTTP (adapters/reads.py). Where a case stands is what the processor's
decisions say (`case_status`), as the casebook keeps it: nothing here derives it again.
A read side that does not answer is `ReadNotAvailable` -> 503.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict

MAX_MOVEMENTS = 100
MAX_CASE_LIST = 500  # cases one list answer holds at most (the casebook's own limit)


class ReadNotAvailable(RuntimeError):
    """The read side cannot answer (not configured, or not answering): 503."""


class _View(BaseModel):
    # what the read side sends beyond these fields is not intake's to pass on
    model_config = ConfigDict(frozen=True, extra="ignore")


class DecisionEntry(_View):
    """A decision of the processor, with the rule and the figures it used (docs/design.md rule
    6) and, for refusals and rejections, its written reasons (P9)."""

    event_id: uuid.UUID
    type: str
    rule: str
    case_status: str | None = None  # where the case stood after it
    occurred_at: datetime
    causation_id: uuid.UUID | None = None  # the submission that caused it
    amount_fen: int | None = None
    figures: dict[str, int | str]
    reason: str | None = None


class DeadlineView(_View):
    case_id: str
    kind: str  # relief_24h (R5) or paperwork_5d (P1)
    due_at: datetime  # as the grant states it
    state: str = "open"  # open, warned, met, breached, void
    warned: bool = False


class CaseView(_View):
    """A case of one town, as its decisions state it: status, money, deadlines, story."""

    town: str
    case_id: str
    status: str
    funded_by: str | None = None
    category: str | None = None  # what the request registered
    urgency: str | None = None
    requested_fen: int | None = None
    incident_id: str | None = None
    granted_fen: int = 0
    paid_fen: int = 0
    recovery_fen: int = 0
    opened_at: datetime
    updated_at: datetime
    granted_at: datetime | None = None
    deadlines: list[DeadlineView] = []
    decisions: list[DecisionEntry] = []


class SubmissionStatus(StrEnum):
    PENDING = "pending"  # not decided yet (or not known yet)
    DECIDED = "decided"  # the processor decided it: the decisions it caused
    REJECTED = "rejected"  # the processor refused it: the reason


class SubmissionView(_View):
    """What became of a record this API accepted (the `event_id` of its 202)."""

    event_id: uuid.UUID
    status: SubmissionStatus
    town: str | None = None
    type: str | None = None
    correlation_id: str | None = None
    reason: str | None = None  # rejected: why (ID numbers masked)
    decisions: list[DecisionEntry] = []


class ReserveMovementView(_View):
    posting_id: uuid.UUID
    kind: str
    occurred_at: datetime
    change_fen: int
    balance_fen: int


class ReserveView(_View):
    town: str
    size_fen: int  # R4: the configured reserve size
    available_fen: int
    held_fen: int  # held for advances granted and not yet paid
    paid_fen: int = 0  # paid out as relief (the ledger's relief_paid balance)
    movements: list[ReserveMovementView]


class CaseSummary(_View):
    """A case in a list: where it stands, its money, its 24-hour deadline and the rule
    and figures of its latest decision."""

    town: str
    case_id: str
    status: str
    category: str | None = None
    urgency: str | None = None
    incident_id: str | None = None
    funded_by: str | None = None
    requested_fen: int | None = None
    granted_fen: int = 0
    paid_fen: int = 0
    opened_at: datetime
    updated_at: datetime
    relief_due_at: datetime | None = None
    relief_state: str | None = None
    last_type: str
    last_rule: str
    last_figures: dict[str, int | str] = {}


class CaseList(_View):
    total: int  # every case that matched, whatever the limit
    cases: list[CaseSummary]


class ReadScope(BaseModel):
    """Whose submissions a reader sees: a town's token its town's, a bureau's or a
    department's its own organisation's; county staff (no scope) every town's."""

    model_config = ConfigDict(frozen=True)

    town: str | None = None
    org: str | None = None


class ReadSource(Protocol):
    async def case(self, town: str, case_id: str) -> CaseView | None: ...

    async def deadlines(self, town: str) -> list[DeadlineView]: ...

    async def cases(
        self, town: str | None, statuses: list[str], incident_id: str | None, limit: int
    ) -> CaseList: ...

    async def submission(self, event_id: uuid.UUID, scope: ReadScope) -> SubmissionView: ...

    async def reserve(self, town: str, size_fen: int) -> ReserveView: ...

    async def close(self) -> None: ...
