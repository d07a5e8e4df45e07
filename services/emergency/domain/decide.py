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
  R4  the 50,000-yuan town reserve ........ advance.request_urgent (hold or escalate),
                                            bookkeeping.hold, advance.replenish
  P3  advance cap for light cases ......... advance.request_urgent
  P1  paperwork within 5 days ............. advance.paperwork, ticks
  P6  same household, same cause .......... here (`_request`), advance.mark_grant
  R7  vagrants referred to origin ......... here (`_request`)
  R3/R6 caps, deliberation ................ approval.request_expenditure, approval.deliberation
  P2  town approval authority ............. approval.request_expenditure, review.review
  P9  refusals in writing ................. approval.reject
  P5  transitional living relief .......... transitional
  P8  recovery and fines .................. review.review
  P11 settlement replenishes the reserve .. review.settle, advance.replenish
"""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel

from schemas.decisions import AdvanceRefused, ReferredToOriginCounty, RefusalReason
from schemas.envelope import Record
from schemas.intake import (
    AdvanceCancelled,
    CaseReviewed,
    ClockTick,
    DeliberationDecided,
    DisclosurePublished,
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
from services.emergency.domain import advance, approval, review, ticks, transitional
from services.emergency.domain.book import Book, minute_of
from services.emergency.domain.bookkeeping import opening_posting
from services.emergency.domain.common import (
    Refuse,
    RuleBroken,
    Rules,
    at_of,
    case_date,
    envelope,
)
from services.emergency.domain.state import (
    DUPLICATE_WINDOW,
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
    book.put_state(state.model_copy(update={"clock": max(state.clock or at, at)}))

    book.begin()
    try:
        decided = _decide(book, record, rules)
    except Refuse as exc:
        book.rollback()  # nothing changes but the opening, if this was the first record
        return Verdict(opened, f"{record.type} for case {record.correlation_id!r}: {exc}")
    book.commit()
    return Verdict(opened + decided)


# Commands applied once by event id: a client's retry of the same command (a new record
# with the same event id) changes nothing and emits nothing, even after the case finished.
# A request is applied once by its case: an open case, or the mark a finished or refused
# one leaves (state.CASE_MARK_RETENTION).
_ONCE = (
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


def _decide(book: Book, record: Record, rules: Rules) -> list[BaseModel]:
    if isinstance(record, _ONCE):
        if book.applied(str(record.event_id)) is not None:
            return []
        book.mark_applied(str(record.event_id), at_of(record))
    match record:
        case ReliefRequested():
            return _request(book, record, rules)
        case PaymentConfirmed():
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


# ======================================================================= requests


def _request(book: Book, record: ReliefRequested, rules: Rules) -> list[BaseModel]:
    """Triage of a new case: already registered, referred (R7), an unknown or closed
    incident (R1), a duplicate (P6); then by kind of relief."""
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

    def refuse(reason: RefusalReason, rule: str, **more: int | str) -> list[BaseModel]:
        book.mark_finished(
            case_id, CaseMark(request_id=request_id, status=CaseStatus.REFUSED, finished_at=at)
        )
        return [
            AdvanceRefused(
                **envelope(record, "refused"),
                rule=rule,
                figures={**figures, **more},
                reason=reason,
                case_status=CaseStatus.REFUSED,
            )
        ]

    # R7: vagrants whose origin is known are placed by that county.
    at = at_of(record)
    if record.vagrant and record.origin_county is not None:
        book.mark_finished(
            case_id, CaseMark(request_id=request_id, status=CaseStatus.REFERRED, finished_at=at)
        )
        return [
            ReferredToOriginCounty(
                **envelope(record, "referred"),
                rule="R7",
                figures={"origin_county": record.origin_county},
                origin_county=record.origin_county,
                case_status=CaseStatus.REFERRED,
            )
        ]

    if record.incident_id is not None:
        incident = book.incident(record.incident_id)
        if incident is None:
            return refuse(RefusalReason.UNKNOWN_INCIDENT, "R1", incident_id=record.incident_id)
        if incident.status == "closed":
            return refuse(RefusalReason.INCIDENT_CLOSED, "R1", incident_id=record.incident_id)

    # P6: same household, same cause -> no second grant within the window.
    cause_key = f"{record.household_ref}|{record.incident_id or record.category.value}"
    previous = book.grant(cause_key)
    if previous is not None and case_date(at) - case_date(previous.granted_at) < DUPLICATE_WINDOW:
        granted_on = case_date(previous.granted_at).isoformat()
        return refuse(RefusalReason.DUPLICATE, "P6", previous_grant_on=granted_on)

    case = Case(
        case_id=case_id,
        request_id=request_id,
        town=record.town,
        household_ref=record.household_ref,
        category=record.category.value,
        urgency=record.urgency.value,
        cause_key=cause_key,
        requested_fen=record.requested_fen,
        status=CaseStatus.ADVANCED,  # for now: each kind decides its own
        received_at=at,
    )
    if record.category is ReliefCategory.TRANSITIONAL_LIVING:
        return transitional.request_transitional(book, record, rules, case)
    if record.urgency is Urgency.URGENT:
        return advance.request_urgent(book, record, rules, case)
    return approval.request_expenditure(book, record, rules, case)
