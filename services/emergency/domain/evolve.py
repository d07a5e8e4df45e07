"""`evolve(book, event, rules)`: the processor's state as the fold of what it decided.

The decisions (relief.decisions.v1) say what they imply — the case they open (`opened`),
where it stands after them (`case_status`), its due times — and the postings
(ledger.postings.v1) say how money moved. Folding them, in order, with the incidents the
bureau reported, gives back the business state that `decide` left: each town's reserve
and county money, its alert, its counters, the open cases with their deadlines and
schedules, the P6 grants and the marks of finished and refused cases. So the state can be
rebuilt from the processor's own output, and no reader has to re-derive a rule: what
`evolve` needs from the rules is configuration only (warning leads), never a judgement.

Left out, being bookkeeping rather than business: the partition clock, the marks of
applied command ids, and which wheel minutes a tick has already dropped (a rebuilt
wheel may hold references that a later tick finds finished and skips).

Time's housekeeping comes from the ticks, as for the live state: a mark whose retention
ran out (a finished case's, a closed incident's) leaves when a tick reaches it, and a
tick says nothing of it. So a worker rebuilt from its decisions keeps reading the
intake's ticks; a tick on a state that has folded what the tick decided finds nothing
more to decide and only drops what expired (tests/unit/emergency/builders.py checks
this after every tick of every story: the business state equals the live one).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from schemas import decisions as d
from schemas.intake import (
    EmergencyPeriodDeclared,
    EmergencyPeriodEnded,
    IncidentClosed,
    IncidentReported,
    ReliefCategory,
)
from schemas.postings import AccountKind, Posting, PostingKind, parse_account
from services.emergency.domain import duplicates
from services.emergency.domain.book import Book, minute_of
from services.emergency.domain.common import (
    DAYS_PER_MONTH,
    Rules,
    at_of,
    schedule_case,
    store_case,
)
from services.emergency.domain.deadlines import Deadline, DeadlineState
from services.emergency.domain.state import (
    INCIDENT_RETENTION,
    Case,
    CaseMark,
    CaseStatus,
    IncidentMark,
    TownState,
)


class NotFoldable(RuntimeError):
    """An event the state cannot follow (a case never opened): the log is not ours."""


def evolve(book: Book, event: BaseModel, rules: Rules) -> None:
    """Fold one record the processor emitted (or an incident fact) into the book."""
    if isinstance(event, Posting):
        _money(book, event, rules)
    elif isinstance(event, IncidentReported | IncidentClosed):
        _incident(book, event)
    elif isinstance(event, EmergencyPeriodDeclared | EmergencyPeriodEnded):
        _emergency_period(book, event)
    elif isinstance(event, d.Decision):
        _decision(book, event, rules)


# ======================================================================= money


def _lines(posting: Posting, kind: AccountKind, side: str) -> int:
    return sum(
        line.amount_fen
        for line in posting.lines
        if line.side.value == side and parse_account(line.account)[0] is kind
    )


def _money(book: Book, posting: Posting, rules: Rules) -> None:
    kind = PostingKind(posting.kind)
    amount = posting.amount_fen
    if kind is PostingKind.RESERVE_FUNDED and book.state is None:
        state = TownState.new(posting.town, amount)
        book.put_state(
            state.model_copy(
                update={"opened": True, "wheel_minute": minute_of(posting.occurred_at)}
            )
        )
        return
    s = book.s
    reserve = s.reserve
    if kind is PostingKind.ADVANCE_GRANTED:
        book.update(reserve=reserve.hold(amount))
        _held_by(book, posting, d.FundedBy.TOWN_RESERVE)
    elif kind is PostingKind.ESCALATED_ADVANCE:
        book.update(county_held_fen=s.county_held_fen + amount)
        _held_by(book, posting, d.FundedBy.COUNTY_FUND)
    elif kind is PostingKind.PAYMENT_CONFIRMED:
        paid = _lines(posting, AccountKind.RELIEF_PAID, "debit")
        released = _lines(posting, AccountKind.TOWN_RESERVE, "debit")
        book.update(reserve=reserve.pay(paid + released, paid))
    elif kind is PostingKind.ESCALATED_PAID:
        paid = _lines(posting, AccountKind.RELIEF_PAID, "debit")
        released = _lines(posting, AccountKind.COUNTY_FUND, "debit")
        book.update(
            county_held_fen=s.county_held_fen - paid - released,
            county_paid_fen=s.county_paid_fen + paid,
        )
    elif kind is PostingKind.ADVANCE_VOIDED:
        if _lines(posting, AccountKind.TOWN_RESERVE, "debit"):
            book.update(reserve=reserve.release(amount))
        else:
            book.update(county_held_fen=s.county_held_fen - amount)
    elif kind is PostingKind.RESERVE_REPLENISHED:
        book.update(reserve=reserve.replenish(amount))
    elif kind in (PostingKind.TOP_UP, PostingKind.TRANSITIONAL_INSTALMENT):
        book.update(county_paid_fen=s.county_paid_fen + amount)
    # R4 + P11: the "reserve low" alert clears as soon as the reserve is back above it.
    state = book.s
    threshold = rules.policy.reserve_low_threshold_fen(state.reserve.size_fen)
    if state.low_alerted and not state.reserve.is_low(threshold):
        book.update(low_alerted=False)


def _held_by(book: Book, posting: Posting, funded_by: d.FundedBy) -> None:
    """An approval's hold says where its money is held (an advance's grant says it too)."""
    case = book.case(posting.correlation_id)
    if case is not None and case.funded_by != funded_by.value:
        book.put_case(case.model_copy(update={"funded_by": funded_by.value}))


# ======================================================================= incidents


def _incident(book: Book, fact: IncidentReported | IncidentClosed) -> None:
    mark = book.incident(fact.incident_id)
    if book.state is None:
        raise NotFoldable(f"incident {fact.incident_id} before its town was opened")
    if isinstance(fact, IncidentReported):
        if mark is None:
            book.put_incident(fact.incident_id, IncidentMark(status="open"))
            book.update(open_incidents=book.s.open_incidents + 1)
    elif mark is not None and mark.status != "closed":
        at = at_of(fact)
        book.put_incident(fact.incident_id, IncidentMark(status="closed", closed_at=at))
        book.update(open_incidents=book.s.open_incidents - 1)
        book.schedule(at + INCIDENT_RETENTION, f"i:{fact.incident_id}")


def _emergency_period(book: Book, fact: EmergencyPeriodDeclared | EmergencyPeriodEnded) -> None:
    """R2: the bureau's declaration, a fact folded as the rules applied it."""
    mark = book.incident(fact.incident_id)
    if mark is None:
        raise NotFoldable(f"emergency period for an unknown incident {fact.incident_id}")
    at = at_of(fact)
    if isinstance(fact, EmergencyPeriodDeclared):
        update = {"emergency_from": at, "emergency_until": fact.until}
        book.put_incident(fact.incident_id, mark.model_copy(update=update))
    elif mark.in_emergency(at):
        book.put_incident(fact.incident_id, mark.model_copy(update={"emergency_until": at}))


# ======================================================================= cases


def _decision(book: Book, event: d.Decision, rules: Rules) -> None:
    at = event.occurred_at
    if isinstance(event, d.ReserveLow):
        book.update(low_alerted=True)
        return
    referral_alone = (
        isinstance(event, d.ReferredToOriginCounty) and book.case(event.correlation_id) is None
    )  # (R7 before interim relief: older records referred a vagrant with nothing else)
    if isinstance(event, d.AdvanceRefused) or referral_alone:
        status = CaseStatus.REFUSED if isinstance(event, d.AdvanceRefused) else CaseStatus.REFERRED
        book.mark_finished(
            event.correlation_id,
            CaseMark(request_id=str(event.causation_id), status=status, finished_at=at),
        )
        return
    if event.case_status is None:
        return  # a town's decision with nothing for a case (ReplenishmentRefused)
    case = _open(book, event) if event.opened is not None else book.case(event.correlation_id)
    if case is None:
        raise NotFoldable(f"{event.type} for case {event.correlation_id} that is not open")
    updates: dict[str, Any] = {"status": event.case_status}
    policy = rules.policy

    match event:
        case d.AdvanceGranted():
            updates.update(
                granted_fen=event.amount_fen,
                funded_by=event.funded_by.value,
                relief_deadline=_deadline(
                    d.DeadlineKind.RELIEF_24H, case.received_at, event.due_at,
                    policy.relief_warning_lead,
                ),
            )  # fmt: skip
            if event.paperwork_due_at is not None:
                updates["paperwork_deadline"] = _deadline(
                    d.DeadlineKind.PAPERWORK_5D, case.received_at, event.paperwork_due_at,
                    policy.paperwork_warning_lead,
                )  # fmt: skip
        case d.ApprovalRequired():
            updates["granted_fen"] = event.amount_fen
            if case.category == ReliefCategory.TRANSITIONAL_LIVING.value:  # P5 + P2
                updates.update(
                    funded_by=d.FundedBy.COUNTY_FUND.value,
                    instalment_fen=int(event.figures["instalment_fen"]),
                    instalments_total=int(event.figures["months"]),
                )
        case d.ReliefApproved() if event.case_status is CaseStatus.APPROVED:
            updates["granted_fen"] = event.amount_fen
        case d.ReliefApproved() if event.case_status is CaseStatus.TRANSITIONAL:
            starts = event.opened is not None or case.status is CaseStatus.AWAITING_APPROVAL
            if starts:  # P5: the schedule starts with its approval
                instalment = int(event.figures["instalment_fen"])
                updates.update(
                    granted_fen=event.amount_fen,
                    funded_by=d.FundedBy.COUNTY_FUND.value,
                    instalment_fen=instalment,
                    instalments_total=event.amount_fen // instalment,
                    instalments_due=0,
                    next_instalment_at=at,
                )
            else:  # P5: extended; an ended schedule resumes a month after its last
                updates.update(
                    granted_fen=event.amount_fen,
                    instalments_total=event.amount_fen // case.instalment_fen,
                    next_instalment_at=case.next_instalment_at
                    or case.received_at + timedelta(days=DAYS_PER_MONTH * case.instalments_due),
                    schedule_ended_at=None,
                )
        case d.ReliefRejected() | d.AdvanceVoided():
            if isinstance(event, d.AdvanceVoided):
                updates.update(
                    relief_deadline=_void(case.relief_deadline),
                    paperwork_deadline=_void(case.paperwork_deadline),
                )
            duplicates.release(book, case)
        case d.ReliefPaid():
            updates["paid_fen"] = event.amount_fen
        case d.DeadlineWarned() | d.DeadlineMet() | d.DeadlineBreached():
            field = (
                "relief_deadline"
                if event.deadline is d.DeadlineKind.RELIEF_24H
                else "paperwork_deadline"
            )
            deadline: Deadline | None = getattr(case, field)
            if deadline is None:
                raise NotFoldable(f"{event.type} for a case without a {event.deadline.value}")
            outcome = {
                d.DeadlineWarned: DeadlineState.WARNED,
                d.DeadlineMet: DeadlineState.MET,
                d.DeadlineBreached: DeadlineState.BREACHED,
            }[type(event)]
            updates[field] = deadline.model_copy(update={"state": outcome})
        case d.InstalmentDue():
            more = event.instalment_no < case.instalments_total
            updates.update(
                instalments_due=event.instalment_no,
                next_instalment_at=event.due_at + timedelta(days=DAYS_PER_MONTH) if more else None,
                schedule_ended_at=None if more else event.due_at,
            )
        case d.TransitionalInstalmentPaid():
            if event.instalment_no > case.instalments_due:
                raise NotFoldable(f"instalment {event.instalment_no} paid before it fell due")
            updates.update(
                instalments_paid=event.instalment_no,
                paid_fen=case.paid_fen + event.amount_fen,
            )
        case _:
            pass  # the status says it all (escalated, deliberation, reviewed, recovery)
    case = case.model_copy(update=updates)
    schedule_case(book, case)
    store_case(book, case, at)


def _open(book: Book, event: d.Decision) -> Case:
    facts = event.opened
    if facts is None:
        raise NotFoldable("no case facts")
    case = Case(
        case_id=event.correlation_id,
        request_id=str(event.causation_id),
        town=event.town,
        household_ref=facts.household_ref,
        category=facts.category.value,
        urgency=facts.urgency.value,
        cause_key=duplicates.cause_of(facts.category.value, facts.incident_id),
        persons=duplicates.persons_of(facts.household_ref, facts.member_refs),
        claimed=facts.claimed,
        requested_fen=facts.requested_fen,
        status=event.case_status or CaseStatus.ADVANCED,
        received_at=event.occurred_at,
    )
    book.put_case(case)
    duplicates.mark(book, case, event.occurred_at)  # P6: marked as the case opens
    return case


def _deadline(kind: d.DeadlineKind, start: datetime, due: datetime, lead: timedelta) -> Deadline:
    return Deadline(kind=kind.value, due_at=due, warn_at=max(start, due - lead))


def _void(deadline: Deadline | None) -> Deadline | None:
    if deadline is None:
        return None
    return deadline.model_copy(update={"state": DeadlineState.VOID})
