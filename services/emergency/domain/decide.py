"""The emergency-aid rules' entry point: `decide(book, record, rules) -> Verdict`, pure.

For one intake record and one town, `decide` says what follows — decisions and balanced
postings, or a refusal with its reason when the record cannot apply — and writes the
town's new state into the book. It reads no clock and does no I/O: time is the broker's
stamp on the record (`recorded_at`), and every output id is derived from its cause, so
the same record against the same state always gives the same outputs, byte for byte
(docs/design.md "rules are pure", "effectively once"). A refused record leaves the book exactly
as it was.

Two kinds of failure (STYLE): an expected business outcome — a duplicate, a reserve too
small, an amount above the cap — is a decision with its rule and figures; a broken
invariant raises (`reserve.ReserveInvariantBroken`, `common.RuleBroken`) and stops the worker.

Where each rule lives, by the lifecycle of a case:
  R5  relief first within 24 h ............ advance.request_urgent, advance.payment, ticks
                                            (24 小时内 counts 24:00:00 itself: deadlines.py)
  R4  the 50,000-yuan town reserve ........ advance.request_urgent (hold or escalate),
                                            bookkeeping.hold, advance.replenish
  R2  emergency period .................... here (`_emergency_period`), advance.request_urgent
  P3  advance cap for light cases ......... advance.request_urgent
  P1  paperwork within 5 days ............. advance.paperwork, ticks
  R1  three layers for one incident ....... here (`_request`), duplicates
  P6  same household, same cause .......... here (`_request`), duplicates
  R7  vagrants: interim relief, referral .. advance.request_urgent
  R3/R6 caps on every path, deliberation .. approval.request_expenditure (town, county),
                                            review.review (county approval, top-up),
                                            approval.deliberation, transitional.extend (P5)
  P2  who approves; section 八 authority .. here (`_AUTHORITY`), approval, review, transitional
  P9  refusals in writing, with reasons ... here (`_request`), approval.reject
  P5  transitional living relief .......... transitional (instalments paid by the town)
  P8  recovery, fines, stopping schedules . review.review
  P11 settlement replenishes the reserve .. approval.settle, advance.replenish

Who decided (section 十): a decision that applies a person's command - an approval, a
deliberation, a review, a payment, a cancellation, an extension - names them in
`decided_by` (the command's actor, from its token); the processor checks that their
role has the authority (`_AUTHORITY`) and never decides in anyone's name.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from pydantic import BaseModel

from schemas.decisions import (
    AdvanceRefused,
    RefusalReason,
    SecondGrantAllowed,
)
from schemas.envelope import Record, Role
from schemas.intake import (
    AdvanceCancelled,
    CaseReviewed,
    ClaimVerdict,
    ClockTick,
    DeliberationDecided,
    DisclosurePublished,
    EmergencyPeriodDeclared,
    EmergencyPeriodEnded,
    HardshipFollowedUp,
    HardshipListPushed,
    IncidentClosed,
    IncidentReported,
    IncidentUpdated,
    PaperworkCompleted,
    PaymentConfirmed,
    ReliefCategory,
    ReliefRequested,
    ReserveFunded,
    ReserveReplenished,
    TransitionalReliefExtended,
    Urgency,
)
from schemas.towns import UnknownTown
from services.emergency.domain import (
    advance,
    approval,
    duplicates,
    review,
    ticks,
    transitional,
)
from services.emergency.domain.book import Book, minute_of
from services.emergency.domain.bookkeeping import opening_posting
from services.emergency.domain.common import (
    Refuse,
    RuleBroken,
    Rules,
    at_of,
    case_date,
    claim_released,
    claimed,
    envelope,
)
from services.emergency.domain.state import (
    INCIDENT_RETENTION,
    MAX_OPEN_CASES_PER_TOWN,
    MAX_OPEN_INCIDENTS_PER_TOWN,
    Case,
    CaseMark,
    CaseStatus,
    IncidentMark,
    TownState,
)

__all__ = ["Refuse", "RuleBroken", "Rules", "Verdict", "decide"]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What one record decided: the records to emit, in order, or why it was refused
    (then `records` holds only what must go out anyway, such as a town's opening)."""

    records: list[BaseModel]
    refused: str | None = None


def decide(book: Book, record: Record, rules: Rules) -> Verdict:
    """Decide one intake record for the book's town."""
    if isinstance(record, ClockTick):
        if book.state is None:
            return Verdict([])  # a town with no state has nothing falling due
        return Verdict(ticks.on_tick(book, record))
    try:
        town = rules.county.town(record.town)
    except UnknownTown:
        return Verdict([], f"unknown town {record.town!r}: not in the county's configuration")
    if town.code != book.town:
        raise RuleBroken(f"a record of town {record.town} decided in the book of {book.town}")

    opened: list[BaseModel] = []
    at = at_of(record)
    if book.state is None:
        state = TownState.new(town.code, town.reserve_fen)
        book.put_state(state.model_copy(update={"opened": True, "wheel_minute": minute_of(at)}))
        opened.append(opening_posting(state, record))
    state = book.s
    if state.clock is None or at > state.clock:  # the town's clock never goes back
        book.put_state(state.model_copy(update={"clock": at}))

    book.begin()
    try:
        decided = _decide(book, record, rules)
    except Refuse as exc:
        book.rollback()  # nothing changes but the opening, if this was the first record
        if isinstance(record, ReliefRequested) and claimed(record):
            # P6 across towns: a request refused at the door releases its county claim
            opened += claim_released(_case_of(record), at, CaseStatus.REFUSED)
        return Verdict(opened, f"{record.type} for case {record.correlation_id!r}: {exc}")
    book.commit()
    return Verdict(opened + decided)


# Commands applied once by event id: a client's retry of the same command (a new record
# with the same event id) changes nothing and emits nothing, even after the case finished.
# A request is applied once by its case: an open case, or the mark a finished or refused
# one leaves (state.CASE_MARK_RETENTION).
_ONCE = (
    EmergencyPeriodDeclared,
    EmergencyPeriodEnded,
    PaymentConfirmed,
    AdvanceCancelled,
    PaperworkCompleted,
    CaseReviewed,
    DeliberationDecided,
    TransitionalReliefExtended,
    ReserveFunded,
    ReserveReplenished,
    IncidentReported,
    IncidentUpdated,
    IncidentClosed,
)


# Section 八 and P2, P10: who may give each command. Intake checks it at the door; the
# processor checks it again, so a record written by any other path cannot act beyond
# its author's authority.
_AUTHORITY: dict[type[Record], frozenset[Role]] = {
    ReliefRequested: frozenset({Role.TOWN, Role.CIVIL_AFFAIRS}),
    PaymentConfirmed: frozenset({Role.TOWN}),
    AdvanceCancelled: frozenset({Role.TOWN}),
    PaperworkCompleted: frozenset({Role.TOWN}),
    CaseReviewed: frozenset({Role.CIVIL_AFFAIRS}),
    DeliberationDecided: frozenset({Role.CIVIL_AFFAIRS}),
    TransitionalReliefExtended: frozenset({Role.CIVIL_AFFAIRS}),
    IncidentReported: frozenset({Role.EMERGENCY_BUREAU}),
    IncidentUpdated: frozenset({Role.EMERGENCY_BUREAU}),
    IncidentClosed: frozenset({Role.EMERGENCY_BUREAU}),
    EmergencyPeriodDeclared: frozenset({Role.EMERGENCY_BUREAU}),
    EmergencyPeriodEnded: frozenset({Role.EMERGENCY_BUREAU}),
    HardshipListPushed: frozenset({Role.DEPARTMENT}),
    HardshipFollowedUp: frozenset({Role.CIVIL_AFFAIRS}),
    DisclosurePublished: frozenset({Role.TOWN, Role.CIVIL_AFFAIRS}),
    ReserveFunded: frozenset({Role.FINANCE}),
    ReserveReplenished: frozenset({Role.FINANCE}),
}


def _check_authority(record: Record) -> None:
    allowed = _AUTHORITY.get(type(record))
    if allowed is not None and record.actor.role not in allowed:
        roles = ", ".join(sorted(r.value for r in allowed))
        raise Refuse(
            f"{record.actor.role.value} ({record.actor.org}) may not give a {record.type}: "
            f"only {roles} may (section 八, P2)"
        )


def _decide(book: Book, record: Record, rules: Rules) -> list[BaseModel]:
    _check_authority(record)
    if isinstance(record, _ONCE):
        if book.applied(str(record.event_id)) is not None:
            return []
        book.mark_applied(str(record.event_id), at_of(record))
    match record:
        case ReliefRequested():
            return _request(book, record, rules)
        case PaymentConfirmed():
            case = book.case(record.case_id)
            if case is not None and case.status is CaseStatus.TRANSITIONAL:
                return transitional.pay_instalment(book, record, case)
            return advance.payment(book, record, rules)
        case AdvanceCancelled():
            return advance.cancel(book, record, rules)
        case PaperworkCompleted():
            return advance.paperwork(book, record)
        case CaseReviewed():
            return review.review(book, record, rules)
        case DeliberationDecided():
            return approval.deliberation(book, record, rules)
        case TransitionalReliefExtended():
            return transitional.extend(book, record, rules)
        case ReserveFunded() | ReserveReplenished():
            return advance.replenish(book, record, rules)
        case IncidentReported():
            return _incident_reported(book, record)
        case IncidentUpdated():
            if book.incident(record.incident_id) is None:
                raise Refuse(f"unknown incident {record.incident_id!r} in this town")
            return []
        case IncidentClosed():
            return _incident_closed(book, record)
        case EmergencyPeriodDeclared() | EmergencyPeriodEnded():
            return _emergency_period(book, record)
        case HardshipListPushed():
            # Section 二: lists for civil affairs to follow up; no money moves here.
            return []
        case HardshipFollowedUp():
            # Section 二, P9: civil affairs' written decision on a row; the casebook keeps
            # it. A case it opened was registered on its own (ReliefRequested).
            return []
        case DisclosurePublished():
            # P7: a town published its list; the casebook keeps it, nothing is decided.
            return []
        case _:
            raise Refuse(f"the processor does not take {record.type} records")


# ======================================================================= incidents


def _incident_reported(book: Book, record: IncidentReported) -> list[BaseModel]:
    if book.incident(record.incident_id) is not None:
        return []  # the bureau reported it again: nothing new
    if book.s.open_incidents >= MAX_OPEN_INCIDENTS_PER_TOWN:
        raise Refuse(f"town already tracks {MAX_OPEN_INCIDENTS_PER_TOWN} open incidents")
    book.put_incident(record.incident_id, IncidentMark(status="open"))
    book.update(open_incidents=book.s.open_incidents + 1)
    return []


def _incident_closed(book: Book, record: IncidentClosed) -> list[BaseModel]:
    mark = book.incident(record.incident_id)
    if mark is None:
        raise Refuse(f"unknown incident {record.incident_id!r} in this town")
    if mark.status == "closed":
        return []
    at = at_of(record)
    book.put_incident(record.incident_id, IncidentMark(status="closed", closed_at=at))
    book.update(open_incidents=book.s.open_incidents - 1)
    book.schedule(at + INCIDENT_RETENTION, f"i:{record.incident_id}")
    return []


def _emergency_period(
    book: Book, record: EmergencyPeriodDeclared | EmergencyPeriodEnded
) -> list[BaseModel]:
    """R2: the bureau declares (or ends) an emergency period for an incident in a town;
    its measures apply to the incident's urgent requests while it runs."""
    mark = book.incident(record.incident_id)
    if mark is None:
        raise Refuse(f"unknown incident {record.incident_id!r} in this town")
    at = at_of(record)
    if isinstance(record, EmergencyPeriodDeclared):
        if record.until is not None and record.until <= at:
            raise Refuse(f"an emergency period ending at {record.until.isoformat()} is over")
        book.put_incident(
            record.incident_id,
            mark.model_copy(update={"emergency_from": at, "emergency_until": record.until}),
        )
    elif mark.in_emergency(at):
        book.put_incident(record.incident_id, mark.model_copy(update={"emergency_until": at}))
    return []


# ======================================================================= requests

# P9: refusals in writing, with reasons - the words the household is given.
_REFUSAL_WORDS = {
    RefusalReason.UNKNOWN_INCIDENT: "所报事故或灾害（{incident_id}）未经应急管理部门登记，"
    "请核实后重新申请。The incident named is not registered by the emergency bureau.",
    RefusalReason.INCIDENT_CLOSED: "该事故或灾害（{incident_id}）应急救助已结束；过渡期生活救助"
    "和临时生活困难救助仍可申请。Emergency relief for this incident has ended; "
    "transitional living relief and temporary hardship relief can still be requested (R1).",
    RefusalReason.DUPLICATE: "该户同一事由已于{previous_grant_on}获得救助（{previous_town}，案件"
    "{previous_case_id}），同一事由不重复救助；确有特殊困难的，可由县民政局决定再次救助。"
    "The household was granted relief for the same cause on {previous_grant_on} "
    "(town {previous_town}, case {previous_case_id}); county civil affairs may grant a "
    "second time for a good reason (P6).",
}


def _request(book: Book, record: ReliefRequested, rules: Rules) -> list[BaseModel]:
    """Triage of a new case: already registered, an unknown incident or a closed one's
    emergency relief (R1), a duplicate (P6); then by kind of relief (a vagrant's is
    urgent: interim relief here, then referral, R7)."""
    case_id, request_id = record.case_id, str(record.event_id)
    existing = book.case(case_id)
    finished = book.finished_case(case_id)
    if existing is not None or finished is not None:
        if (existing or finished).request_id == request_id:  # type: ignore[union-attr]
            return []  # the same request again: already decided
        raise Refuse("a case with this id is already registered")
    if book.s.counts.open_cases >= MAX_OPEN_CASES_PER_TOWN:
        raise Refuse(f"town {book.town} already has {MAX_OPEN_CASES_PER_TOWN} open cases")

    figures: dict[str, int | str] = {"requested_fen": record.requested_fen}
    at = at_of(record)
    case = _case_of(record)

    def refuse(reason: RefusalReason, rule: str, **more: int | str) -> list[BaseModel]:
        book.mark_finished(
            case_id, CaseMark(request_id=request_id, status=CaseStatus.REFUSED, finished_at=at)
        )
        words = _REFUSAL_WORDS.get(reason, "")
        return [
            # P6 across towns: the county's marks of a refused request are released
            *claim_released(case, at, CaseStatus.REFUSED),
            AdvanceRefused(
                **envelope(record, "refused"),
                rule=rule,
                figures={**figures, **more},
                reason=reason,
                reasons=words.format(**more) if words else "",
                case_status=CaseStatus.REFUSED,
            ),
        ]

    if record.vagrant and record.urgency is not Urgency.URGENT:
        raise Refuse("a vagrant's relief is urgent: interim relief, then referral (R7)")

    if record.incident_id is not None:
        incident = book.incident(record.incident_id)
        if incident is None:
            return refuse(RefusalReason.UNKNOWN_INCIDENT, "R1", incident_id=record.incident_id)
        # R1: a closed incident ends its emergency relief, not its later layers
        if incident.status == "closed" and record.category is ReliefCategory.EMERGENCY:
            return refuse(RefusalReason.INCIDENT_CLOSED, "R1", incident_id=record.incident_id)

    # P6 read with R1: the same layer of relief for the same incident, for anyone of the
    # same household, is a duplicate (duplicates.py) - in this town, or in any town of the
    # county as the claims stage found it (claims.py; docs/design.md "one household, many
    # towns").
    persons = case.persons
    second: list[BaseModel] = []
    previous = _previous(book, record, persons, at)
    if previous is not None:
        previous_town, previous_case_id, previous_at = previous
        granted_on = case_date(previous_at).isoformat()
        if record.second_grant_reason is None:
            return refuse(
                RefusalReason.DUPLICATE,
                "P6",
                previous_grant_on=granted_on,
                previous_case_id=previous_case_id,
                previous_town=previous_town,
            )
        if record.actor.role is not Role.CIVIL_AFFAIRS:
            raise Refuse("only county civil affairs grants a second time for one cause (P6)")
        second.append(
            SecondGrantAllowed(
                **envelope(record, "second_grant"),
                rule="P6",
                figures={
                    "previous_case_id": previous_case_id,
                    "previous_grant_on": granted_on,
                    "previous_town": previous_town,
                },
                previous_case_id=previous_case_id,
                reasons=record.second_grant_reason,
                decided_by=record.actor,
            )
        )
    elif record.second_grant_reason is not None:
        raise Refuse("second_grant_reason given, but no earlier grant for this cause (P6)")

    # P6: the grant is marked as the case opens: one awaiting approval or deliberation
    # already blocks a second request (released if it is refused or cancelled).
    duplicates.mark(book, case, at)
    if record.category is ReliefCategory.TRANSITIONAL_LIVING:
        return second + transitional.request_transitional(book, record, rules, case)
    if record.urgency is Urgency.URGENT:
        return second + advance.request_urgent(book, record, rules, case)
    return second + approval.request_expenditure(book, record, rules, case)


def _case_of(record: ReliefRequested) -> Case:
    """The case a request opens, before its kind decides its status and money."""
    return Case(
        case_id=record.case_id,
        request_id=str(record.event_id),
        town=record.town,
        household_ref=record.household_ref,
        category=record.category.value,
        urgency=record.urgency.value,
        cause_key=duplicates.cause_of(record.category.value, record.incident_id),
        persons=duplicates.persons_of_request(record),
        claimed=claimed(record),
        requested_fen=record.requested_fen,
        status=CaseStatus.ADVANCED,  # for now: each kind decides its own
        received_at=at_of(record),
    )


def _previous(
    book: Book, record: ReliefRequested, persons: tuple[str, ...], at: datetime
) -> tuple[str, str, datetime] | None:
    """P6: the earlier grant this request would repeat, as (town, case id, granted at):
    the town's own marks first, then the county's claim."""
    local = duplicates.previous_grant(book, persons, record.category.value, record.incident_id, at)
    if local is not None:
        return book.town, local.case_id, local.granted_at
    claim = record.claim
    if claim is not None and claim.verdict is ClaimVerdict.DUPLICATE:
        if claim.previous_town and claim.previous_case_id and claim.previous_grant_at:
            return claim.previous_town, claim.previous_case_id, claim.previous_grant_at
        raise RuleBroken("a duplicate claim that names no earlier grant")
    return None
