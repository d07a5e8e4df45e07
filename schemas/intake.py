"""Commands and facts on relief.intake.v1, recorded at the door in the past tense.

One convention for the whole topic: what a person or department reports is recorded as
a fact (`ReliefRequested`, `PaymentConfirmed`); the processor answers each with
decisions on relief.decisions.v1. All records are keyed by town code.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from schemas.envelope import (
    MAX_ID_TEXT,
    MAX_ORG_TEXT,
    MAX_SHORT_TEXT,
    MAX_TEXT,
    CorrelationId,
    Record,
    Role,
    TextOnly,
    UtcDatetime,
)
from schemas.identity import HouseholdRef, PersonRef, PublicName, scrub_personal
from schemas.money import Fen, NonNegativeFen

# What people type (a description, a reason, a note): anything shaped like an ID number or
# a phone number is masked before the record exists, so it never reaches Kafka, which
# keeps records for good (docs/design.md "personal data").
FreeText = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(scrub_personal)]
RequiredFreeText = Annotated[
    str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(scrub_personal)
]

# Limits (STYLE "a limit on everything"); a Kafka record stays well under 1 MB.
MAX_HOUSEHOLDS_PER_INCIDENT = 5_000
MAX_HARDSHIP_ROWS = 5_000
MAX_PERSONS_PER_REQUEST = 50
MAX_CASUALTIES = 100_000
MAX_PARTITION = 10_000
# P5: transitional living relief lasts 3 months, extendable to at most 6.
MAX_TRANSITIONAL_MONTHS = 6
# P8: a fraud fine is 1-3 x the amount obtained. The band in force is the configuration's
# (schemas.policy fraud_fine_multiples, checked by the processor); this is only the
# widest a record may carry.
MIN_FINE_MULTIPLE = 1
MAX_FINE_MULTIPLE = 10
# P6: the members of a household named on a request (besides its head): each is a person
# whose grant for a cause blocks a second one (section 六: one record per person).
MAX_MEMBERS_PER_REQUEST = 20


class _Part(TextOnly):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class CaseRecord(Record):
    """A record about one relief case: its correlation_id is the case id."""

    @property
    def case_id(self) -> str:
        return self.correlation_id


# ---------------------------------------------------------------- incidents (R1)


class IncidentKind(StrEnum):
    """R1: accidents (意外伤害事故) and natural disasters (自然灾害)."""

    TRAFFIC = "traffic"
    FIRE = "fire"
    DROWNING = "drowning"
    WORKPLACE = "workplace"
    NATURAL_DISASTER = "natural_disaster"
    OTHER_ACCIDENT = "other_accident"


class DisasterSubtype(StrEnum):
    FLOOD = "flood"
    STORM = "storm"
    EARTHQUAKE = "earthquake"
    LANDSLIDE = "landslide"
    DROUGHT = "drought"
    HAIL = "hail"
    OTHER = "other"


class Casualties(_Part):
    dead: int = Field(default=0, ge=0, le=MAX_CASUALTIES, strict=True)
    injured: int = Field(default=0, ge=0, le=MAX_CASUALTIES, strict=True)


IncidentId = Annotated[str, Field(min_length=1, max_length=MAX_ID_TEXT)]
HouseholdRefs = Annotated[tuple[HouseholdRef, ...], Field(max_length=MAX_HOUSEHOLDS_PER_INCIDENT)]


class IncidentReported(Record):
    """The emergency bureau posts an accident or natural disaster and the households hit
    (R1). correlation_id is the incident id."""

    type: Literal["IncidentReported"] = "IncidentReported"
    schema_version: Literal[1] = 1

    incident_id: IncidentId
    kind: IncidentKind
    disaster_subtype: DisasterSubtype | None = None
    description: FreeText = ""
    casualties: Casualties = Casualties()
    household_refs: HouseholdRefs = ()

    @model_validator(mode="after")
    def _subtype_only_for_disasters(self) -> Self:
        is_disaster = self.kind is IncidentKind.NATURAL_DISASTER
        if is_disaster != (self.disaster_subtype is not None):
            raise ValueError("disaster_subtype is required for, and only for, natural_disaster")
        return self


class IncidentUpdated(Record):
    """New figures for an incident: casualties replace the old ones when given, and
    households are added (never removed: the log keeps what was reported)."""

    type: Literal["IncidentUpdated"] = "IncidentUpdated"
    schema_version: Literal[1] = 1

    incident_id: IncidentId
    casualties: Casualties | None = None
    household_refs_added: HouseholdRefs = ()
    note: FreeText = ""


class IncidentClosed(Record):
    type: Literal["IncidentClosed"] = "IncidentClosed"
    schema_version: Literal[1] = 1

    incident_id: IncidentId
    note: FreeText = ""


class EmergencyPeriodDeclared(Record):
    """R2: the emergency bureau declares an emergency period for an incident in a town
    (one record per town: records are keyed by town). While it runs, the configured
    emergency measures apply to the incident's urgent cases (schemas.policy
    EmergencyMeasures). `until` None: until it is ended."""

    type: Literal["EmergencyPeriodDeclared"] = "EmergencyPeriodDeclared"
    schema_version: Literal[1] = 1

    incident_id: IncidentId
    until: UtcDatetime | None = None
    reason: RequiredFreeText


class EmergencyPeriodEnded(Record):
    """R2: the emergency period of an incident ends in a town."""

    type: Literal["EmergencyPeriodEnded"] = "EmergencyPeriodEnded"
    schema_version: Literal[1] = 1

    incident_id: IncidentId
    note: FreeText = ""


# ---------------------------------------------------------------- relief cases


class Urgency(StrEnum):
    URGENT = "urgent"  # 急难型: relief first within 24 h (R5)
    EXPENDITURE = "expenditure"  # 支出型: capped at multiples of the urban minimum (R3)


class ReliefCategory(StrEnum):
    """R1 kinds of relief, and R3's two expenditure causes."""

    EMERGENCY = "emergency"  # 应急救助
    TRANSITIONAL_LIVING = "transitional_living"  # 过渡期生活救助 (P5)
    TEMPORARY_HARDSHIP = "temporary_hardship"  # 临时生活困难救助
    SERIOUS_ILLNESS = "serious_illness"  # R3: 3-12 x
    EDUCATION = "education"  # R3: 3-6 x


class IdentifiedBy(StrEnum):
    """How the household was identified at intake (R7: vagrants often carry no ID)."""

    RESIDENT_ID = "resident_id"  # the head's resident ID number, hashed at intake
    STATEMENT = "statement"  # R7: an identity statement, hashed at intake (vagrants only)


class ClaimVerdict(StrEnum):
    """P6 across towns: what the county's claims stage found for a request's household."""

    FREE = "free"  # no grant for the cause: the household's people are now marked
    DUPLICATE = "duplicate"  # an earlier grant for the cause, named in the claim


class Claim(_Part):
    """The county-wide P6 check of a request (docs/design.md "one household, many towns"),
    added by the claims stage when it forwards the request to the town's partition; a
    request without one (written before the stage, or straight to the intake topic) is
    checked within its town only. Intake never accepts one from a client."""

    verdict: ClaimVerdict
    claimed_at: UtcDatetime  # the claims topic's broker stamp: when the county checked it
    # DUPLICATE: the first grant for the cause - its town, case, request and date
    previous_town: str | None = Field(default=None, pattern=r"^[0-9]{6,12}$", max_length=12)
    previous_case_id: CorrelationId | None = None
    previous_request_id: str | None = Field(default=None, max_length=36)
    previous_grant_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _duplicate_names_the_first_grant(self) -> Self:
        named = (self.previous_town, self.previous_case_id, self.previous_grant_at)
        if self.verdict is ClaimVerdict.DUPLICATE and None in named:
            raise ValueError("a duplicate claim names the first grant's town, case and date")
        if self.verdict is ClaimVerdict.FREE and any(v is not None for v in named):
            raise ValueError("a free claim names no earlier grant")
        return self


class ReliefRequested(CaseRecord):
    """A town (or county civil affairs) registers a case (correlation_id = the case id).

    v2 added `persons` (how many people the relief is for; P5 pays per person); v1
    samples are upcast with persons = 1 (schemas.registry). Later optional fields, absent
    from older v2 records: `member_refs` (P6: the household's members, keyed hashes made at
    intake), `identified_by` (R7), `second_grant_reason` (P6: civil affairs grants a second
    time for a good reason, recorded).
    """

    type: Literal["ReliefRequested"] = "ReliefRequested"
    schema_version: Literal[2] = 2

    urgency: Urgency
    category: ReliefCategory
    household_ref: HouseholdRef
    incident_id: IncidentId | None = None
    requested_fen: Fen
    reason: RequiredFreeText
    persons: int = Field(default=1, ge=1, le=MAX_PERSONS_PER_REQUEST, strict=True)
    # R7: vagrants and beggars are placed by the county of origin when it is known.
    vagrant: bool = False
    origin_county: str | None = Field(default=None, min_length=1, max_length=MAX_SHORT_TEXT)
    member_refs: tuple[PersonRef, ...] = Field(default=(), max_length=MAX_MEMBERS_PER_REQUEST + 1)
    identified_by: IdentifiedBy = IdentifiedBy.RESIDENT_ID
    second_grant_reason: RequiredFreeText | None = None
    # P7: the recipient's name as it may be published, masked at intake's door ("张＊＊");
    # expenditure-type cases only (urgent ones are not published). Optional in version 2.
    public_name: PublicName | None = None
    # P6 across towns: the county's claims stage's verdict, added when it forwards the
    # request to the town (optional in version 2: absent on what intake writes).
    claim: Claim | None = None

    @model_validator(mode="after")
    def _origin_only_for_vagrants(self) -> Self:
        if self.origin_county is not None and not self.vagrant:
            raise ValueError("origin_county is only recorded for vagrant cases (R7)")
        if self.identified_by is IdentifiedBy.STATEMENT and not self.vagrant:
            raise ValueError(
                "an identity statement instead of a resident ID is for vagrant cases only (R7)"
            )
        return self


class AdvanceCancelled(CaseRecord):
    """The town voids an advance before paying it: the hold goes back to the reserve."""

    type: Literal["AdvanceCancelled"] = "AdvanceCancelled"
    schema_version: Literal[1] = 1

    reason: RequiredFreeText


class PaymentMethod(StrEnum):
    BANK = "bank"  # P9: to the recipient's own account
    CASH = "cash"  # P9: only where needed


class PaymentConfirmed(CaseRecord):
    """The town paid the household: meets the 24 h deadline if before it (R5)."""

    type: Literal["PaymentConfirmed"] = "PaymentConfirmed"
    schema_version: Literal[1] = 1

    amount_fen: Fen
    method: PaymentMethod = PaymentMethod.BANK
    bank_reference: str | None = Field(default=None, min_length=1, max_length=MAX_ID_TEXT)
    # P9: cash only where needed - why it was needed (required by the API for cash; records
    # written before the field lack it)
    cash_reason: RequiredFreeText | None = None

    @model_validator(mode="after")
    def _bank_payments_have_a_reference(self) -> Self:
        if self.method is PaymentMethod.BANK and self.bank_reference is None:
            raise ValueError("a bank payment needs its bank_reference (P9)")
        if self.method is PaymentMethod.BANK and self.cash_reason is not None:
            raise ValueError("cash_reason is recorded for cash payments only (P9)")
        return self


class PaperworkCompleted(CaseRecord):
    """P1: recipient, cause, amount registered and signed within 5 days of the advance."""

    type: Literal["PaperworkCompleted"] = "PaperworkCompleted"
    schema_version: Literal[1] = 1

    note: FreeText = ""


class ReviewOutcome(StrEnum):
    CONFIRMED = "confirmed"
    TOP_UP = "top_up"  # the county adds to the advance from the county fund
    INELIGIBLE = "ineligible"  # the advance is recovered
    FRAUD = "fraud"  # recovered, with a fine of 1-3 x (P8)


class CaseReviewed(CaseRecord):
    """County civil affairs reviews a case after the fact (docs/design.md rule 4).

    `approved_fen` is the total the case is finally worth (0 when ineligible or fraud);
    `top_up_fen` is required for, and only for, a top-up. P8: a fraud *may* be fined
    (可以): `fine_fen`, the amount the reviewer decides, within the configured band of
    multiples of the amount obtained (the processor checks it); `fine_multiple` is the
    older way of saying it (a whole multiple). Neither: no fine.
    """

    type: Literal["CaseReviewed"] = "CaseReviewed"
    schema_version: Literal[1] = 1

    outcome: ReviewOutcome
    approved_fen: NonNegativeFen
    top_up_fen: Fen | None = None
    fine_multiple: int | None = Field(
        default=None, ge=MIN_FINE_MULTIPLE, le=MAX_FINE_MULTIPLE, strict=True
    )
    fine_fen: Fen | None = None
    reasons: FreeText = ""

    @model_validator(mode="after")
    def _outcome_figures(self) -> Self:
        o = self.outcome
        if (o is ReviewOutcome.TOP_UP) != (self.top_up_fen is not None):
            raise ValueError("top_up_fen is required for, and only for, outcome top_up")
        fined = self.fine_multiple is not None or self.fine_fen is not None
        if fined and o is not ReviewOutcome.FRAUD:
            raise ValueError("a fine (fine_fen or fine_multiple, P8) is for fraud only")
        if self.fine_multiple is not None and self.fine_fen is not None:
            raise ValueError("a fine is given as fine_fen or as fine_multiple, not both")
        recovered = o in (ReviewOutcome.INELIGIBLE, ReviewOutcome.FRAUD)
        if recovered and self.approved_fen != 0:
            raise ValueError("approved_fen must be 0 when the case is ineligible or fraud")
        if not recovered and self.approved_fen == 0:
            raise ValueError("approved_fen must be positive when the case is confirmed")
        if recovered and not self.reasons:
            raise ValueError("a recovery needs written reasons (P9)")
        return self


class TransitionalReliefExtended(CaseRecord):
    """P5: transitional living relief runs 3 months, extendable to 6."""

    type: Literal["TransitionalReliefExtended"] = "TransitionalReliefExtended"
    schema_version: Literal[1] = 1

    extended_to_months: int = Field(ge=1, le=MAX_TRANSITIONAL_MONTHS, strict=True)
    reason: RequiredFreeText


class DeliberationDecided(CaseRecord):
    """R6: county civil affairs decides a case above the cap (一事一议), with reasons.
    Exactly one of `approved_fen` and `refused`."""

    type: Literal["DeliberationDecided"] = "DeliberationDecided"
    schema_version: Literal[1] = 1

    approved_fen: Fen | None = None
    refused: bool = False
    reasons: RequiredFreeText

    @model_validator(mode="after")
    def _approved_or_refused(self) -> Self:
        if (self.approved_fen is None) == (not self.refused):
            raise ValueError("a deliberation either approves an amount or is refused")
        return self


# ---------------------------------------------------------------- reserves (R4, P11)


class _ByFinance(Record):
    @model_validator(mode="after")
    def _finance_only(self) -> Self:
        # P10: relief funds are held apart; finance alone moves county money.
        if self.actor.role is not Role.FINANCE:
            raise ValueError("only county finance funds or replenishes a reserve (P10)")
        return self


class ReserveFunded(_ByFinance):
    """The opening funding of a town's reserve (R4: 50,000 yuan by default)."""

    type: Literal["ReserveFunded"] = "ReserveFunded"
    schema_version: Literal[1] = 1

    amount_fen: Fen


class ReserveReplenished(_ByFinance):
    """Settlement tops a town's reserve back up towards its size (P11)."""

    type: Literal["ReserveReplenished"] = "ReserveReplenished"
    schema_version: Literal[1] = 1

    amount_fen: Fen


# ---------------------------------------------------------------- proactive finding (section 二)


class HardshipCategory(StrEnum):
    """Section 二's recipient types."""

    MINIMUM_LIVING = "minimum_living"  # urban / rural 低保
    EXTREME_POVERTY = "extreme_poverty"  # 特困
    REGISTERED_POOR = "registered_poor"
    DISASTER_URGENT = "disaster_urgent"  # 受灾急难群众
    VAGRANT = "vagrant"
    DISABLED = "disabled"
    CONTINUING_EXPENDITURE = "continuing_expenditure"
    ELDERLY_WOMEN_CHILDREN = "elderly_women_children"
    LEGAL_CASE = "legal_case"
    LEFT_BEHIND = "left_behind"  # "three left-behind" groups


class HardshipRow(_Part):
    household_ref: HouseholdRef
    category: HardshipCategory
    note: FreeText = ""


class HardshipListPushed(Record):
    """A department pushes a list of suspected hardship cases ("policy finds people")."""

    type: Literal["HardshipListPushed"] = "HardshipListPushed"
    schema_version: Literal[1] = 1

    department: str = Field(min_length=1, max_length=MAX_ORG_TEXT)
    rows: tuple[HardshipRow, ...] = Field(min_length=1, max_length=MAX_HARDSHIP_ROWS)


class HardshipOutcome(StrEnum):
    """What civil affairs made of one row of a pushed list (section 二)."""

    CASE_OPENED = "case_opened"  # a relief case was registered: its case id is named
    NO_RELIEF_NEEDED = "no_relief_needed"
    REFERRED = "referred"  # to another office or department: which one is named


DecidedBy = Annotated[
    str, Field(min_length=1, max_length=MAX_ORG_TEXT), AfterValidator(scrub_personal)
]
ReferredTo = Annotated[
    str, Field(min_length=1, max_length=MAX_SHORT_TEXT), AfterValidator(scrub_personal)
]


def hardship_row_correlation(list_event_id: uuid.UUID, row: int) -> str:
    """The correlation id of a row's follow-up: the row, by its list record and index."""
    return f"hardship-row-{list_event_id.hex}-{row}"


class HardshipFollowedUp(Record):
    """County civil affairs followed up one row of a pushed list (section 二, "policy finds
    people") with a written decision (P9: reasons in words): a case opened (its case id),
    no relief needed, or referred elsewhere (to whom). The row is named by its list record
    (`list_event_id`, a HardshipListPushed of the same town) and its index in that record's
    rows. The processor decides nothing on it; the casebook keeps it, and the first
    follow-up of a row stands. correlation_id: `hardship_row_correlation`."""

    type: Literal["HardshipFollowedUp"] = "HardshipFollowedUp"
    schema_version: Literal[1] = 1

    list_event_id: uuid.UUID
    row: int = Field(ge=0, lt=MAX_HARDSHIP_ROWS, strict=True)
    outcome: HardshipOutcome
    case_id: CorrelationId | None = None
    referred_to: ReferredTo | None = None
    reasons: RequiredFreeText
    # section 十: the record shows who decided; the officer as they sign the decision
    decided_by: DecidedBy

    @model_validator(mode="after")
    def _outcome_details(self) -> Self:
        if self.actor.role is not Role.CIVIL_AFFAIRS:
            raise ValueError("county civil affairs follows up a hardship list (section 二)")
        if (self.outcome is HardshipOutcome.CASE_OPENED) != (self.case_id is not None):
            raise ValueError("case_id is required for, and only for, outcome case_opened")
        if (self.outcome is HardshipOutcome.REFERRED) != (self.referred_to is not None):
            raise ValueError("referred_to is required for, and only for, outcome referred")
        return self


# ---------------------------------------------------------------- public disclosure (P7)

DISCLOSURE_PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


class DisclosurePublished(Record):
    """P7, section 十: a town (or county civil affairs) has published the town's list of
    expenditure-type relief approved in `period` (a month, "2026-03"). It covers every
    case of the period approved before this record's `recorded_at` (the broker's stamp,
    on the town's own partition, so the same order as the approvals); a case approved
    later needs the list published again. The processor decides nothing on it; the
    casebook keeps it. correlation_id: "disclosure-<period>"."""

    type: Literal["DisclosurePublished"] = "DisclosurePublished"
    schema_version: Literal[1] = 1

    period: str = Field(pattern=DISCLOSURE_PERIOD_PATTERN, min_length=7, max_length=7)
    # where it was posted (a notice board, the town's website), free text
    note: FreeText = ""

    @model_validator(mode="after")
    def _by_town_or_civil_affairs(self) -> Self:
        if self.actor.role not in (Role.TOWN, Role.CIVIL_AFFAIRS):
            raise ValueError("a town or county civil affairs publishes a disclosure list (P7)")
        return self


# ------------------------------------------- time (docs/design.md "time is an event")


class ClockTick(Record):
    """A partition-local time mark. Its time is its `recorded_at` (the broker's
    LogAppendTime); deadlines (R5, P1) are judged when a tick passes them."""

    type: Literal["ClockTick"] = "ClockTick"
    schema_version: Literal[1] = 1

    partition: int = Field(ge=0, le=MAX_PARTITION, strict=True)


__all__ = [
    "AdvanceCancelled",
    "CaseRecord",
    "CaseReviewed",
    "Casualties",
    "ClockTick",
    "CorrelationId",
    "DeliberationDecided",
    "DisasterSubtype",
    "DisclosurePublished",
    "EmergencyPeriodDeclared",
    "EmergencyPeriodEnded",
    "HardshipCategory",
    "HardshipFollowedUp",
    "HardshipListPushed",
    "HardshipOutcome",
    "HardshipRow",
    "IdentifiedBy",
    "IncidentClosed",
    "IncidentKind",
    "IncidentReported",
    "IncidentUpdated",
    "PaperworkCompleted",
    "PaymentConfirmed",
    "PaymentMethod",
    "ReliefCategory",
    "ReliefRequested",
    "ReserveFunded",
    "ReserveReplenished",
    "ReviewOutcome",
    "TransitionalReliefExtended",
    "Urgency",
]
