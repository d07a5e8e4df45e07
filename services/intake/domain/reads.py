"""What the read endpoints answer, and the `ReadSource` they are answered from.

The processor's state lives in Faust tables and the ledger in PostgreSQL; intake reads
only the ledger's read side (services/ledger/adapters/postgres.py). What the ledger does
not hold (open deadlines live in the processor's tables) is `ReadNotAvailable` -> 503.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from schemas.postings import PostingKind

MAX_HISTORY = 1_000
MAX_MOVEMENTS = 100


class ReadNotAvailable(RuntimeError):
    """The read side cannot answer this (not configured, or not built yet): 503."""


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class HistoryEntry(_View):
    posting_id: uuid.UUID
    kind: str
    occurred_at: datetime
    recorded_at: datetime | None
    memo: str
    amount_fen: int  # the posting's total debits (= credits)


class DecisionEntry(_View):
    """A decision of the processor on the case, with the rule and figures it used
    (DESIGN rule 6) and, for refusals and rejections, its written reasons (P9)."""

    event_id: uuid.UUID
    type: str
    rule: str
    occurred_at: datetime
    figures: dict[str, int | str]
    reason: str | None = None


class CaseView(_View):
    case_id: str
    town: str
    status: str
    history: list[HistoryEntry]  # the money: postings in the ledger
    decisions: list[DecisionEntry] = []  # everything decided, money or not


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
    movements: list[ReserveMovementView]


class DeadlineView(_View):
    case_id: str
    kind: str  # relief_24h (R5) or paperwork_5d (P1)
    due_at: datetime
    warned: bool = False


# The status a case reaches with each posting kind, in the order of its life (R5, P1, P8).
_STATUS_BY_KIND = {
    PostingKind.ADVANCE_GRANTED.value: "advance_granted",
    PostingKind.ESCALATED_ADVANCE.value: "escalated_to_county_fund",
    PostingKind.ADVANCE_VOIDED.value: "advance_voided",
    PostingKind.PAYMENT_CONFIRMED.value: "paid",
    PostingKind.ESCALATED_PAID.value: "paid",
    PostingKind.RELIEF_PAID_BY_COUNTY.value: "paid",
    PostingKind.TOP_UP.value: "topped_up",
    PostingKind.TRANSITIONAL_INSTALMENT.value: "instalment_paid",
    PostingKind.RECOVERY_CLAIMED.value: "recovery_claimed",
    PostingKind.RECOVERY_COLLECTED.value: "recovered",
}


# What a case without money moving is waiting for or ended with, by its latest decision.
_STATUS_BY_DECISION = {
    "AdvanceRefused": "refused",
    "ReferredToOriginCounty": "referred_to_origin_county",
    "DeliberationRequired": "deliberation_required",
    "ApprovalRequired": "awaiting_county_approval",
    "ReliefRejected": "rejected",
}


def case_status(kinds: Sequence[str], decision_types: Sequence[str] = ()) -> str:
    """The case's money status from its postings, latest first; else what its decisions
    say; "no_postings" if neither tells."""
    for kind in reversed(kinds):
        status = _STATUS_BY_KIND.get(kind)
        if status is not None:
            return status
    for decision in reversed(decision_types):
        status = _STATUS_BY_DECISION.get(decision)
        if status is not None:
            return status
    return "no_postings"


class ReadSource(Protocol):
    async def case(self, case_id: str) -> CaseView | None: ...

    async def reserve(self, town: str, size_fen: int) -> ReserveView: ...

    async def deadlines(self, town: str) -> list[DeadlineView]: ...

    async def close(self) -> None: ...
