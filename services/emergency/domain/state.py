"""The processor's state for one town: its reserve, its open cases, what it has applied.

All of a town's records land on one partition (keyed by town), so one worker owns a
town's state at a time and the reserve rule needs no locks (DESIGN "keyed by town").
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from services.emergency.domain.deadlines import Deadline
from services.emergency.domain.reserve import Reserve

# A limit on everything (STYLE): how many applied event ids a case remembers for
# de-duplication, and how many closed cases' duplicate keys (P6) a town keeps.
MAX_APPLIED_IDS_PER_CASE = 64
MAX_GRANT_KEYS_PER_TOWN = 50_000


class CaseStatus(StrEnum):
    ADVANCED = "advanced"  # urgent: advance granted, a hold on the reserve (R5)
    ESCALATED = "escalated"  # urgent: advance paid from the county fund (DESIGN rule 2)
    PAID = "paid"  # the town confirmed the payment
    CANCELLED = "cancelled"  # the advance was voided before payment
    AWAITING_APPROVAL = "awaiting_approval"  # expenditure-type, above the town's authority (P2)
    DELIBERATION = "deliberation"  # above the cap: 一事一议 (R6)
    APPROVED = "approved"
    REJECTED = "rejected"
    REVIEWED = "reviewed"  # county review done (confirmed, topped up, ineligible, fraud)
    TRANSITIONAL = "transitional"  # transitional living relief schedule running (P5)


class Case(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str
    request_id: str  # event id of the ReliefRequested: the root of the case's derived ids
    town: str
    household_ref: str
    category: str
    urgency: str
    cause_key: str  # P6: same household, same cause -> no second grant
    requested_fen: int
    granted_fen: int = 0  # held or approved
    paid_fen: int = 0
    funded_by: str = "town_reserve"  # schemas.decisions.FundedBy
    status: CaseStatus
    received_at: datetime
    relief_deadline: Deadline | None = None  # R5: 24 h
    paperwork_deadline: Deadline | None = None  # P1: 5 days
    instalments_total: int = 0  # P5: months of transitional relief granted
    instalments_paid: int = 0
    next_instalment_at: datetime | None = None
    instalment_fen: int = 0
    applied_ids: tuple[str, ...] = ()

    def remembers(self, event_id: str) -> bool:
        return event_id in self.applied_ids

    def with_applied(self, event_id: str) -> tuple[str, ...]:
        return (*self.applied_ids, event_id)[-MAX_APPLIED_IDS_PER_CASE:]


class TownState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    town: str
    reserve: Reserve
    opened: bool = False  # the opening funding posting has been emitted
    county_held_fen: int = 0  # escalated advances held from the county fund
    county_paid_fen: int = 0
    cases: dict[str, Case] = Field(default_factory=dict)
    # P6: "<household_ref>|<cause>" -> date of the grant; pruned after the policy window
    grants: dict[str, date] = Field(default_factory=dict)
    incidents: dict[str, str] = Field(default_factory=dict)  # incident id -> status
    clock: datetime | None = None  # the latest broker stamp seen on this town's partition
    low_alerted: bool = False  # a "reserve low" decision is out and not yet cleared
    # offset of the last intake record applied to this town (its partition's offsets):
    # a redelivered record at or below it was applied before a restart and is skipped
    last_offset: int = -1

    @classmethod
    def new(cls, town: str, reserve_size_fen: int) -> TownState:
        return cls(town=town, reserve=Reserve.opened(reserve_size_fen))
