"""Decisions of the emergency processor on relief.decisions.v1.

Every decision is explained (docs/design.md rule 6, section 十): it names the `rule` it applied
("R5", "P3", or several joined by "+", e.g. "R3+R6") and the `figures` it used, so audit
and the public disclosure can show why. Ids are derived from the causing record
(`Record.derive`), so a redelivered command yields the same decisions.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictInt

from schemas.envelope import (
    MAX_SHORT_TEXT,
    Actor,
    RequiredText,
    Text,
    UtcDatetime,
    no_control_characters,
)
from schemas.identity import HouseholdRef, PersonRef, PublicName
from schemas.intake import (
    MAX_MEMBERS_PER_REQUEST,
    MAX_PERSONS_PER_REQUEST,
    CaseRecord,
    IncidentId,
    ReliefCategory,
    Urgency,
    _Part,
)
from schemas.money import Fen, NonNegativeFen

MAX_FIGURES = 32
MAX_FIGURE_NAME = 64
RULE_PATTERN = r"^[RP][0-9]{1,2}(\+[RP][0-9]{1,2})*$"

# A figure's name and text are checked like every other text of a record (no control
# characters): a NUL inside a dict would pass the model-wide check and stop every jsonb
# reader at that record; refused at decode, the record is dead-lettered instead.
FigureName = Annotated[
    str, Field(min_length=1, max_length=MAX_FIGURE_NAME), AfterValidator(no_control_characters)
]
FigureValue = (
    StrictInt
    | Annotated[str, Field(max_length=MAX_SHORT_TEXT), AfterValidator(no_control_characters)]
)
Figures = Annotated[dict[FigureName, FigureValue], Field(max_length=MAX_FIGURES)]


class CaseStatus(StrEnum):
    """Where a case stands after a decision: decisions say it, so no reader re-derives it."""

    ADVANCED = "advanced"  # urgent: advance granted, a hold on the town reserve (R5)
    ESCALATED = "escalated"  # urgent: advance held on the county fund (docs/design.md rule 2)
    PAID = "paid"  # the town confirmed the payment
    CANCELLED = "cancelled"  # the advance was voided before payment
    AWAITING_APPROVAL = "awaiting_approval"  # expenditure-type, above the town's authority (P2)
    DELIBERATION = "deliberation"  # above the cap: 一事一议 (R6)
    APPROVED = "approved"  # approved and held until the town pays
    REJECTED = "rejected"  # refused in writing, with reasons (P9)
    REVIEWED = "reviewed"  # county review done (confirmed, topped up, ineligible, fraud)
    TRANSITIONAL = "transitional"  # transitional living relief schedule running (P5)
    REFUSED = "refused"  # the request was refused at once (a duplicate, an unknown incident)
    REFERRED = "referred"  # R7: referred to the county of origin


class CaseFacts(_Part):
    """What the request registered, carried by the first decision of a case, so that a
    reader (and the processor rebuilding its state) needs nothing but the decisions."""

    household_ref: HouseholdRef
    # P7: the masked name the request carried (optional in version 1, like case_status)
    public_name: PublicName | None = None
    category: ReliefCategory
    urgency: Urgency
    incident_id: IncidentId | None = None
    requested_fen: Fen
    persons: int = Field(default=1, ge=1, le=MAX_PERSONS_PER_REQUEST, strict=True)
    # P6: the household's members named at intake (optional: older records lack them)
    member_refs: tuple[PersonRef, ...] = Field(default=(), max_length=MAX_MEMBERS_PER_REQUEST + 1)
    # P6 across towns: the county's claims stage marked the household for this case
    # (optional: older records lack it)
    claimed: bool = False


class Decision(CaseRecord):
    """The envelope plus the rule and the figures that explain the decision, and the
    status of the case after it (None for a decision about a town, not a case).

    `case_status` was added to version 1 as an optional field: records written before it
    read as None."""

    rule: str = Field(pattern=RULE_PATTERN, max_length=32)
    figures: Figures = Field(default_factory=dict)
    case_status: CaseStatus | None = None
    # on the first decision of a case only (optional in version 1, like case_status)
    opened: CaseFacts | None = None
    # Section 十: the person (role and organisation, from the token of the command) whose
    # decision this records - an approval, a deliberation, a review, a payment, a
    # cancellation. None: the processor decided by a rule alone (an advance, a deadline,
    # a refusal at the door). The processor checks the role's authority and never fills
    # this in with anyone but the command's own actor. (Optional in version 1.)
    decided_by: Actor | None = None


class FundedBy(StrEnum):
    TOWN_RESERVE = "town_reserve"  # R4: the town's 50,000-yuan reserve
    COUNTY_FUND = "county_fund"  # docs/design.md rule 2: escalated when the reserve cannot cover it


class AdvanceGranted(Decision):
    """R5: relief first. A hold on the reserve (or the county fund); due_at = the
    request's recorded_at + 24 h."""

    type: Literal["AdvanceGranted"] = "AdvanceGranted"
    schema_version: Literal[1] = 1

    amount_fen: Fen
    due_at: UtcDatetime
    funded_by: FundedBy = FundedBy.TOWN_RESERVE
    # P1: the paperwork is due by then (optional in version 1: older records lack it)
    paperwork_due_at: UtcDatetime | None = None


class ReliefPaid(Decision):
    """The town confirmed the payment of held relief: `amount_fen` paid to the household,
    `released_fen` (the unpaid rest of the hold) back where it was held."""

    type: Literal["ReliefPaid"] = "ReliefPaid"
    schema_version: Literal[1] = 1

    amount_fen: Fen
    released_fen: NonNegativeFen = 0
    funded_by: FundedBy


class RefusalReason(StrEnum):
    DUPLICATE = "duplicate"  # P6: same household, same cause
    NOT_AUTHORISED = "not_authorised"  # section 八, P2: the registrant may not register this
    OVER_ADVANCE_CAP = "over_advance_cap"  # P3
    UNKNOWN_TOWN = "unknown_town"
    UNKNOWN_INCIDENT = "unknown_incident"
    INCIDENT_CLOSED = "incident_closed"
    NOT_URGENT = "not_urgent"  # expenditure cases go through approval, not an advance
    REFERRED = "referred"  # R7: the county of origin places vagrants
    INVALID = "invalid"


class AdvanceRefused(Decision):
    """A request refused at once, in writing (P9): `reason` is the code, `reasons` the
    words the household is given (optional in version 1: older records lack them)."""

    type: Literal["AdvanceRefused"] = "AdvanceRefused"
    schema_version: Literal[1] = 1

    reason: RefusalReason
    reasons: Text = ""


class AdvanceVoided(Decision):
    """The town cancelled an unpaid advance: its hold goes back where it came from."""

    type: Literal["AdvanceVoided"] = "AdvanceVoided"
    schema_version: Literal[1] = 1

    amount_fen: Fen
    reasons: RequiredText


class EscalatedToCountyFund(Decision):
    """docs/design.md rule 2: the town's reserve cannot cover the advance; the county fund pays
    it at once so the 24-hour promise holds (R5), and finance is alerted."""

    type: Literal["EscalatedToCountyFund"] = "EscalatedToCountyFund"
    schema_version: Literal[1] = 1

    amount_fen: Fen
    due_at: UtcDatetime
    available_fen: NonNegativeFen


class DeliberationRequired(Decision):
    """R3 + R6: above the cap is not refused; county civil affairs deliberates."""

    type: Literal["DeliberationRequired"] = "DeliberationRequired"
    schema_version: Literal[1] = 1

    requested_fen: Fen
    cap_fen: Fen


class ApproverLevel(StrEnum):
    TOWN = "town"  # P2: below 3,000 yuan by default
    COUNTY = "county"


class ApprovalRequired(Decision):
    """P2: the amount is above the town's authority; county civil affairs approves it
    (a CaseReviewed) or finds it ineligible."""

    type: Literal["ApprovalRequired"] = "ApprovalRequired"
    schema_version: Literal[1] = 1

    amount_fen: Fen
    approver_level: ApproverLevel


class ReliefApproved(Decision):
    type: Literal["ReliefApproved"] = "ReliefApproved"
    schema_version: Literal[1] = 1

    amount_fen: Fen
    approver_level: ApproverLevel
    # the approver's written reasons, when given (a deliberation's, a review's)
    reasons: Text = ""


class SecondGrantAllowed(Decision):
    """P6: county civil affairs grants a household a second time for the same cause, for
    a good reason, recorded; the first grant is named in the figures. The case's own
    decisions follow."""

    type: Literal["SecondGrantAllowed"] = "SecondGrantAllowed"
    schema_version: Literal[1] = 1

    previous_case_id: str = Field(min_length=1, max_length=MAX_SHORT_TEXT)
    reasons: RequiredText


class ReliefRejected(Decision):
    """P9: refusals are given in writing, with reasons."""

    type: Literal["ReliefRejected"] = "ReliefRejected"
    schema_version: Literal[1] = 1

    reasons: RequiredText


class DeadlineKind(StrEnum):
    RELIEF_24H = "relief_24h"  # R5
    PAPERWORK_5D = "paperwork_5d"  # P1


class DeadlineWarned(Decision):
    type: Literal["DeadlineWarned"] = "DeadlineWarned"
    schema_version: Literal[1] = 1

    deadline: DeadlineKind
    due_at: UtcDatetime


class DeadlineMet(Decision):
    type: Literal["DeadlineMet"] = "DeadlineMet"
    schema_version: Literal[1] = 1

    deadline: DeadlineKind
    due_at: UtcDatetime


class DeadlineBreached(Decision):
    type: Literal["DeadlineBreached"] = "DeadlineBreached"
    schema_version: Literal[1] = 1

    deadline: DeadlineKind
    due_at: UtcDatetime


class RecoveryClaimed(Decision):
    """Ineligible or fraud (P8): the amount is recovered; fraud adds a fine of 1-3 x."""

    type: Literal["RecoveryClaimed"] = "RecoveryClaimed"
    schema_version: Literal[1] = 1

    amount_fen: Fen
    fine_fen: NonNegativeFen = 0


class ReferredToOriginCounty(Decision):
    """R7: vagrants whose origin is known are placed by that county's government."""

    type: Literal["ReferredToOriginCounty"] = "ReferredToOriginCounty"
    schema_version: Literal[1] = 1

    origin_county: str = Field(min_length=1, max_length=MAX_SHORT_TEXT)


class ReserveLow(Decision):
    """A town's available reserve fell below the threshold (20 % of its size by
    default): finance is alerted to replenish (R4, P11). correlation_id: the case whose
    grant caused it."""

    type: Literal["ReserveLow"] = "ReserveLow"
    schema_version: Literal[1] = 1

    available_fen: NonNegativeFen
    threshold_fen: Fen


class ReplenishmentRefused(Decision):
    """R4 + P11: a replenishment would lift the reserve above its size; nothing moves.
    correlation_id: the replenishment's own correlation id."""

    type: Literal["ReplenishmentRefused"] = "ReplenishmentRefused"
    schema_version: Literal[1] = 1

    amount_fen: Fen
    shortfall_fen: NonNegativeFen


class InstalmentDue(Decision):
    """P5: the next instalment of a transitional living relief schedule falls due."""

    type: Literal["InstalmentDue"] = "InstalmentDue"
    schema_version: Literal[1] = 1

    instalment_no: int = Field(ge=1, le=366, strict=True)
    amount_fen: Fen
    due_at: UtcDatetime


class TransitionalInstalmentPaid(Decision):
    """P5: one instalment of transitional living relief paid."""

    type: Literal["TransitionalInstalmentPaid"] = "TransitionalInstalmentPaid"
    schema_version: Literal[1] = 1

    instalment_no: int = Field(ge=1, le=366, strict=True)
    amount_fen: Fen
