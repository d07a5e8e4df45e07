"""The API's request bodies, and their mapping to the records of relief.intake.v1.

Pure: the moment, the event id, the hashing key and the county are passed in (`Stamp`).
A request carries the household head's resident ID number in clear; the record carries
only its keyed hash (docs/design.md "personal data stays out of the log"). Every failure is a
`RequestInvalid` whose problems name the JSON path ("body", field, index) and never
echo an ID number.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, StrictBool, ValidationError

from schemas.envelope import (
    MAX_ANY_STR,
    MAX_ORG_TEXT,
    MAX_SHORT_TEXT,
    Actor,
    CorrelationId,
    Record,
    RequiredText,
    ShortText,
    Text,
    TextOnly,
    UtcDatetime,
)
from schemas.identity import (
    MAX_NAME_CHARS,
    InvalidName,
    InvalidResidentId,
    household_ref,
    person_ref,
    public_name,
    statement_ref,
)
from schemas.intake import (
    MAX_FINE_MULTIPLE,
    MAX_HOUSEHOLDS_PER_INCIDENT,
    MAX_MEMBERS_PER_REQUEST,
    MAX_PERSONS_PER_REQUEST,
    AdvanceCancelled,
    CaseReviewed,
    Casualties,
    DeliberationDecided,
    DisasterSubtype,
    DisclosurePublished,
    EmergencyPeriodDeclared,
    EmergencyPeriodEnded,
    HardshipFollowedUp,
    HardshipOutcome,
    IdentifiedBy,
    IncidentClosed,
    IncidentKind,
    IncidentReported,
    IncidentUpdated,
    PaperworkCompleted,
    PaymentConfirmed,
    PaymentMethod,
    ReliefCategory,
    ReliefRequested,
    ReserveFunded,
    ReserveReplenished,
    ReviewOutcome,
    Urgency,
    hardship_row_correlation,
)
from schemas.money import Fen, NonNegativeFen
from schemas.towns import County

Loc = tuple[str | int, ...]
R = TypeVar("R", bound=Record)
# A town code as the API takes it (the clock's pseudo-town is not for callers).
TOWN_PATTERN = r"^[0-9]{6,12}$"
ApiTown = Annotated[str, Field(pattern=TOWN_PATTERN, min_length=6, max_length=12)]
# A resident ID number is 18 characters; anything much longer is refused before parsing.
ResidentIdText = Annotated[str, Field(min_length=1, max_length=32)]
MAX_BANK_REFERENCE = 64


def _written(text: str) -> str:
    if not text.strip():
        raise ValueError("only spaces: write it out")
    return text


# What a person must write - a reason, P9's written reasons, why cash, a bank reference,
# who was referred where: spaces alone say nothing and are refused at the door (the
# records keep their own, older bounds: what Kafka already holds still reads).
Written = AfterValidator(_written)
# occurred_at is the caller's; a moment this far ahead of the door's clock is a typo.
MAX_CLOCK_SKEW = timedelta(minutes=10)


class RequestInvalid(ValueError):
    """422: `problems` are (JSON path, message) pairs."""

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Stamp:
    """What the door adds to a request: who, when, which id, and the county it knows."""

    event_id: uuid.UUID
    now: datetime  # aware; the door's clock (the broker's LogAppendTime is the real one)
    actor: Actor
    hash_key: bytes
    county: County

    @property
    def today(self) -> date:
        return self.now.date()


class _Body(TextOnly):
    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, str_max_length=MAX_ANY_STR
    )


class CaseBody(_Body):
    """A body that names its town (the Kafka key)."""

    town: ApiTown = Field(description="the town code (the Kafka key)")


class ReportIncident(CaseBody):
    """R1: an accident or natural disaster, with the heads of the households hit."""

    incident_id: CorrelationId
    kind: IncidentKind
    disaster_subtype: DisasterSubtype | None = None
    description: Text = ""
    casualties: Casualties = Casualties()
    household_head_ids: list[ResidentIdText] = Field(
        default_factory=list, max_length=MAX_HOUSEHOLDS_PER_INCIDENT
    )
    occurred_at: UtcDatetime | None = Field(default=None, description="when it happened")


class UpdateIncident(CaseBody):
    casualties: Casualties | None = None
    household_head_ids_added: list[ResidentIdText] = Field(
        default_factory=list, max_length=MAX_HOUSEHOLDS_PER_INCIDENT
    )
    note: Text = ""
    occurred_at: UtcDatetime | None = None


class CloseIncident(CaseBody):
    note: Text = ""
    occurred_at: UtcDatetime | None = None


class DeclareEmergencyPeriod(CaseBody):
    """R2: an emergency period for an incident in a town (the emergency bureau)."""

    until: UtcDatetime | None = Field(default=None, description="its end; none: until ended")
    reason: Annotated[RequiredText, Written]


class EndEmergencyPeriod(CaseBody):
    note: Text = ""


class RegisterCase(CaseBody):
    """A relief case: registered by its town (section 八: urgent, R5, or expenditure-type,
    R3) or by county civil affairs. The household is its head's resident ID number and
    its members' (P6: a grant to any of them blocks a second one for the same cause); a
    vagrant with no ID is registered on an identity statement instead (R7)."""

    case_id: CorrelationId | None = Field(
        default=None, description="the caller's case id; derived from the event id if absent"
    )
    urgency: Urgency
    category: ReliefCategory
    household_head_id: ResidentIdText | None = Field(
        default=None, description="the head's resident ID number (hashed at the door)"
    )
    household_member_ids: list[ResidentIdText] = Field(
        default_factory=list,
        max_length=MAX_MEMBERS_PER_REQUEST,
        description="the other members' resident ID numbers (P6; hashed at the door)",
    )
    identity_statement: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SHORT_TEXT,
        description="R7: a vagrant without an ID: who they say they are (hashed at the door)",
    )
    second_grant_reason: Annotated[str, Written] | None = Field(
        default=None,
        min_length=1,
        max_length=2_000,
        description="P6: county civil affairs grants a second time for this reason",
    )
    incident_id: CorrelationId | None = None
    requested_fen: Fen
    reason: Annotated[RequiredText, Written]
    persons: int = Field(default=1, ge=1, le=MAX_PERSONS_PER_REQUEST, strict=True)
    vagrant: StrictBool = False
    origin_county: Annotated[str, Written] | None = Field(
        default=None, min_length=1, max_length=MAX_SHORT_TEXT
    )
    occurred_at: UtcDatetime | None = None
    recipient_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=2 * MAX_NAME_CHARS,
        description="expenditure-type only: the recipient's name, masked here at the door "
        "('张三丰' -> '张＊＊') for the public disclosure list (P7); the clear name is "
        "never recorded",
    )


class ConfirmPayment(CaseBody):
    """R5: the town paid; P9: to the household's own bank account, cash only where needed."""

    amount_fen: Fen
    method: PaymentMethod = PaymentMethod.BANK
    bank_reference: Annotated[str, Written] | None = Field(
        default=None, min_length=1, max_length=MAX_BANK_REFERENCE
    )
    cash_reason: Annotated[str, Written] | None = Field(
        default=None, min_length=1, max_length=2_000, description="P9: why cash was needed"
    )
    occurred_at: UtcDatetime | None = None


class CompletePaperwork(CaseBody):
    """P1: paperwork within 5 days of the advance."""

    note: Text = ""


class CancelAdvance(CaseBody):
    reason: Annotated[RequiredText, Written]


class ReviewCase(CaseBody):
    """docs/design.md rule 4: confirmed, topped up, ineligible, or fraud (P8: fine 1-3 x)."""

    outcome: ReviewOutcome
    approved_fen: NonNegativeFen
    top_up_fen: Fen | None = None
    fine_multiple: int | None = Field(default=None, ge=1, le=MAX_FINE_MULTIPLE, strict=True)
    fine_fen: Fen | None = Field(
        default=None, description="P8: the fine decided (within the configured band)"
    )
    reasons: Text = ""


class DecideDeliberation(CaseBody):
    """R6: one of approved_fen and refused, with reasons (P9)."""

    approved_fen: Fen | None = None
    refused: StrictBool = False
    reasons: Annotated[RequiredText, Written]


class PublishDisclosure(_Body):
    """P7: the town's list of expenditure-type relief approved in a month was published."""

    note: Text = Field(default="", description="where it was posted (notice board, website)")


class FollowUpHardship(CaseBody):
    """Section 二, P9: civil affairs' written decision on one row of a department's list
    (the town is the list's): a case opened (its case id), no relief needed, or referred
    elsewhere (to whom)."""

    outcome: HardshipOutcome
    case_id: CorrelationId | None = Field(
        default=None, description="the case opened (outcome case_opened only)"
    )
    referred_to: Annotated[ShortText, Written] | None = Field(
        default=None, description="the office referred to (outcome referred only)"
    )
    reasons: Annotated[RequiredText, Written] = Field(description="the written reasons (P9)")
    decided_by: Annotated[str, Field(min_length=1, max_length=MAX_ORG_TEXT), Written] = Field(
        description="the officer who decided, as they sign it"
    )


class MoveReserve(_Body):
    """P10, P11: county finance funds or replenishes a town's reserve."""

    amount_fen: Fen


# ---------------------------------------------------------------- mapping


def check_town(county: County, town: str, loc: Loc = ("body", "town")) -> None:
    if town not in county:
        raise RequestInvalid([(loc, f"unknown town {town[:12]!r}: not in {county.name}")])


def _refs(ids: Sequence[str], loc: Loc, stamp: Stamp) -> tuple[str, ...]:
    refs: list[str] = []
    problems: list[tuple[Loc, str]] = []
    for i, text in enumerate(ids):
        try:
            refs.append(household_ref(text, stamp.hash_key, today=stamp.today))
        except InvalidResidentId as exc:
            problems.append(((*loc, i), str(exc)))  # the message masks the number
    if problems:
        raise RequestInvalid(problems)
    return tuple(refs)


def _ref(text: str, loc: Loc, stamp: Stamp) -> str:
    try:
        return household_ref(text, stamp.hash_key, today=stamp.today)
    except InvalidResidentId as exc:
        raise RequestInvalid([(loc, str(exc))]) from None


def _occurred(given: datetime | None, stamp: Stamp) -> datetime:
    if given is None:
        return stamp.now
    if given > stamp.now + MAX_CLOCK_SKEW:
        raise RequestInvalid([(("body", "occurred_at"), "occurred_at is in the future")])
    return given


def _build(cls: type[R], fields: dict[str, Any], renames: dict[str, str]) -> R:
    """The record, or RequestInvalid with the record's own checks mapped to body paths."""
    try:
        return cls(**fields)
    except ValidationError as exc:
        problems: list[tuple[Loc, str]] = []
        for e in exc.errors():
            loc = tuple(e["loc"])
            head = renames.get(str(loc[0]), str(loc[0])) if loc else None
            path: Loc = ("body",) if head is None else ("body", head, *loc[1:])
            msg = str(e["msg"]).removeprefix("Value error, ")
            problems.append((path, msg))
        raise RequestInvalid(problems) from None


def _envelope(
    stamp: Stamp, town: str, correlation_id: str, occurred_at: datetime
) -> dict[str, Any]:
    return {
        "event_id": stamp.event_id,
        "occurred_at": occurred_at,
        "town": town,
        "actor": stamp.actor,
        "correlation_id": correlation_id,
    }


def report_incident(req: ReportIncident, stamp: Stamp) -> IncidentReported:
    check_town(stamp.county, req.town)
    refs = _refs(req.household_head_ids, ("body", "household_head_ids"), stamp)
    fields = _envelope(stamp, req.town, req.incident_id, _occurred(req.occurred_at, stamp))
    fields.update(
        incident_id=req.incident_id,
        kind=req.kind,
        disaster_subtype=req.disaster_subtype,
        description=req.description,
        casualties=req.casualties,
        household_refs=refs,
    )
    return _build(IncidentReported, fields, {"household_refs": "household_head_ids"})


def update_incident(incident_id: str, req: UpdateIncident, stamp: Stamp) -> IncidentUpdated:
    check_town(stamp.county, req.town)
    refs = _refs(req.household_head_ids_added, ("body", "household_head_ids_added"), stamp)
    fields = _envelope(stamp, req.town, incident_id, _occurred(req.occurred_at, stamp))
    fields.update(
        incident_id=incident_id,
        casualties=req.casualties,
        household_refs_added=refs,
        note=req.note,
    )
    return _build(IncidentUpdated, fields, {"household_refs_added": "household_head_ids_added"})


def close_incident(incident_id: str, req: CloseIncident, stamp: Stamp) -> IncidentClosed:
    check_town(stamp.county, req.town)
    fields = _envelope(stamp, req.town, incident_id, _occurred(req.occurred_at, stamp))
    fields.update(incident_id=incident_id, note=req.note)
    return _build(IncidentClosed, fields, {})


def declare_emergency_period(
    incident_id: str, req: DeclareEmergencyPeriod, stamp: Stamp
) -> EmergencyPeriodDeclared:
    check_town(stamp.county, req.town)
    fields = _envelope(stamp, req.town, incident_id, stamp.now)
    fields.update(incident_id=incident_id, until=req.until, reason=req.reason)
    return _build(EmergencyPeriodDeclared, fields, {})


def end_emergency_period(
    incident_id: str, req: EndEmergencyPeriod, stamp: Stamp
) -> EmergencyPeriodEnded:
    check_town(stamp.county, req.town)
    fields = _envelope(stamp, req.town, incident_id, stamp.now)
    fields.update(incident_id=incident_id, note=req.note)
    return _build(EmergencyPeriodEnded, fields, {})


def case_id_for(req: RegisterCase, event_id: uuid.UUID) -> str:
    # A retried request (same Idempotency-Key, same event id) names the same case.
    return req.case_id if req.case_id is not None else f"case-{event_id.hex}"


def _identity(req: RegisterCase, stamp: Stamp) -> tuple[str, tuple[str, ...], IdentifiedBy]:
    """(household_ref, member refs, how identified): P6's household is its members; R7's
    vagrant without an ID is its identity statement."""
    if (req.household_head_id is None) == (req.identity_statement is None):
        raise RequestInvalid(
            [(("body",), "give household_head_id, or (vagrants only, R7) identity_statement")]
        )
    if req.identity_statement is not None:
        if not req.vagrant:
            raise RequestInvalid(
                [(("body", "identity_statement"), "an identity statement is for vagrants (R7)")]
            )
        if req.household_member_ids:
            raise RequestInvalid(
                [(("body", "household_member_ids"), "members are named with a head's ID")]
            )
        if not req.identity_statement.split():
            # the statement is hashed with its spaces collapsed: blank ones would all be
            # one household, and P6 would refuse every vagrant after the first
            raise RequestInvalid(
                [(("body", "identity_statement"), "an identity statement says who: not blank")]
            )
        return statement_ref(req.identity_statement, stamp.hash_key), (), IdentifiedBy.STATEMENT
    head = req.household_head_id or ""
    loc: Loc = ("body", "household_head_id")
    ref = _ref(head, loc, stamp)
    members: list[str] = []
    problems: list[tuple[Loc, str]] = []
    for n, text in enumerate((head, *req.household_member_ids)):
        where: Loc = loc if n == 0 else ("body", "household_member_ids", n - 1)
        try:
            members.append(person_ref(text, stamp.hash_key, today=stamp.today))
        except InvalidResidentId as exc:
            problems.append((where, str(exc)))
    if problems:
        raise RequestInvalid(problems)
    return ref, tuple(dict.fromkeys(members)), IdentifiedBy.RESIDENT_ID


def _public_name(req: RegisterCase) -> str | None:
    """P7: the name as it may be published; the clear name goes no further than here."""
    if req.recipient_name is None:
        return None
    loc: Loc = ("body", "recipient_name")
    if req.urgency is not Urgency.EXPENDITURE:
        raise RequestInvalid(
            [
                (
                    loc,
                    "a name is taken for expenditure-type cases only (P7: urgent ones "
                    "are not published)",
                )
            ]
        )
    try:
        return public_name(req.recipient_name)
    except InvalidName as exc:  # the message never repeats the name
        raise RequestInvalid([(loc, str(exc))]) from None


def register_case(req: RegisterCase, stamp: Stamp) -> ReliefRequested:
    check_town(stamp.county, req.town)
    ref, members, identified_by = _identity(req, stamp)
    masked = _public_name(req)
    case_id = case_id_for(req, stamp.event_id)
    fields = _envelope(stamp, req.town, case_id, _occurred(req.occurred_at, stamp))
    fields.update(
        urgency=req.urgency,
        category=req.category,
        household_ref=ref,
        incident_id=req.incident_id,
        requested_fen=req.requested_fen,
        reason=req.reason,
        persons=req.persons,
        vagrant=req.vagrant,
        origin_county=req.origin_county,
        member_refs=members,
        identified_by=identified_by,
        second_grant_reason=req.second_grant_reason,
        public_name=masked,
    )
    return _build(
        ReliefRequested,
        fields,
        {
            "household_ref": "household_head_id",
            "member_refs": "household_member_ids",
            "public_name": "recipient_name",
        },
    )


def confirm_payment(case_id: str, req: ConfirmPayment, stamp: Stamp) -> PaymentConfirmed:
    check_town(stamp.county, req.town)
    if req.method is PaymentMethod.CASH and req.cash_reason is None:
        raise RequestInvalid(
            [(("body", "cash_reason"), "a cash payment says why cash was needed (P9)")]
        )
    fields = _envelope(stamp, req.town, case_id, _occurred(req.occurred_at, stamp))
    fields.update(
        amount_fen=req.amount_fen,
        method=req.method,
        bank_reference=req.bank_reference,
        cash_reason=req.cash_reason,
    )
    return _build(PaymentConfirmed, fields, {})


def complete_paperwork(case_id: str, req: CompletePaperwork, stamp: Stamp) -> PaperworkCompleted:
    check_town(stamp.county, req.town)
    fields = _envelope(stamp, req.town, case_id, stamp.now)
    fields.update(note=req.note)
    return _build(PaperworkCompleted, fields, {})


def cancel_advance(case_id: str, req: CancelAdvance, stamp: Stamp) -> AdvanceCancelled:
    check_town(stamp.county, req.town)
    fields = _envelope(stamp, req.town, case_id, stamp.now)
    fields.update(reason=req.reason)
    return _build(AdvanceCancelled, fields, {})


def review_case(case_id: str, req: ReviewCase, stamp: Stamp) -> CaseReviewed:
    check_town(stamp.county, req.town)
    fields = _envelope(stamp, req.town, case_id, stamp.now)
    fields.update(
        outcome=req.outcome,
        approved_fen=req.approved_fen,
        top_up_fen=req.top_up_fen,
        fine_multiple=req.fine_multiple,
        fine_fen=req.fine_fen,
        reasons=req.reasons,
    )
    return _build(CaseReviewed, fields, {})


def decide_deliberation(case_id: str, req: DecideDeliberation, stamp: Stamp) -> DeliberationDecided:
    check_town(stamp.county, req.town)
    fields = _envelope(stamp, req.town, case_id, stamp.now)
    fields.update(approved_fen=req.approved_fen, refused=req.refused, reasons=req.reasons)
    return _build(DeliberationDecided, fields, {})


def publish_disclosure(
    town: str, period: str, req: PublishDisclosure, stamp: Stamp
) -> DisclosurePublished:
    check_town(stamp.county, town, ("path", "town"))
    fields = _envelope(stamp, town, f"disclosure-{period}", stamp.now)
    fields.update(period=period, note=req.note)
    return _build(DisclosurePublished, fields, {})


def follow_up_hardship(
    list_event_id: uuid.UUID, row: int, req: FollowUpHardship, stamp: Stamp
) -> HardshipFollowedUp:
    check_town(stamp.county, req.town)
    fields = _envelope(stamp, req.town, hardship_row_correlation(list_event_id, row), stamp.now)
    fields.update(
        list_event_id=list_event_id,
        row=row,
        outcome=req.outcome,
        case_id=req.case_id,
        referred_to=req.referred_to,
        reasons=req.reasons,
        decided_by=req.decided_by,
    )
    return _build(HardshipFollowedUp, fields, {})


def reserve_correlation(town: str) -> str:
    # the processor's correlation for reserve records (services/emergency decide)
    return f"reserve:{town}"


def fund_reserve(town: str, req: MoveReserve, stamp: Stamp) -> ReserveFunded:
    check_town(stamp.county, town, ("path", "town"))
    fields = _envelope(stamp, town, reserve_correlation(town), stamp.now)
    fields.update(amount_fen=req.amount_fen)
    return _build(ReserveFunded, fields, {})


def replenish_reserve(town: str, req: MoveReserve, stamp: Stamp) -> ReserveReplenished:
    check_town(stamp.county, town, ("path", "town"))
    fields = _envelope(stamp, town, reserve_correlation(town), stamp.now)
    fields.update(amount_fen=req.amount_fen)
    return _build(ReserveReplenished, fields, {})
