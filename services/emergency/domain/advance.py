"""Urgent cases and the town reserve: relief first within 24 hours (R5), from the town's
50,000-yuan reserve (R4), or from the county fund when the reserve cannot cover it.

An advance is a *hold* (docs/design.md rule 1): the confirmed payment posts it, a cancellation
voids it. The town completes the paperwork within 5 days (P1). Finance tops reserves back
up, never above their size (P11).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from schemas.decisions import (
    AdvanceGranted,
    AdvanceVoided,
    DeadlineKind,
    EscalatedToCountyFund,
    FundedBy,
    ReferredToOriginCounty,
    ReliefPaid,
    ReplenishmentRefused,
    ReserveLow,
)
from schemas.envelope import Record
from schemas.intake import (
    AdvanceCancelled,
    PaperworkCompleted,
    PaymentConfirmed,
    ReliefRequested,
    ReserveFunded,
    ReserveReplenished,
)
from schemas.postings import AccountKind, PostingKind, transfer
from services.emergency.domain import duplicates
from services.emergency.domain.book import Book
from services.emergency.domain.bookkeeping import (
    county_account,
    held_account,
    hold,
    paid_account,
    posting,
    reserve_account,
)
from services.emergency.domain.common import (
    Refuse,
    Rules,
    at_of,
    claim_released,
    deadline_decision,
    envelope,
    facts,
    open_case,
    schedule_case,
    store_case,
)
from services.emergency.domain.deadlines import Deadline, DeadlineState
from services.emergency.domain.state import Case, CaseStatus

_HELD = (CaseStatus.ADVANCED, CaseStatus.ESCALATED, CaseStatus.APPROVED)


def request_urgent(
    book: Book, record: ReliefRequested, rules: Rules, case: Case
) -> list[BaseModel]:
    """R5: relief first, within 24 hours: an advance at once, as a hold on the reserve.
    `case` is the case as registered (status and figures still to be decided here)."""
    policy = rules.policy
    at = at_of(record)
    reserve = book.s.reserve
    # P3: a light urgent case gets up to the advance cap now; anything above it is for the
    # county's review (a top-up), not a reason to make the family wait. R2: while an
    # emergency period declared for the incident runs, its measures apply instead.
    incident = book.incident(record.incident_id) if record.incident_id is not None else None
    emergency = incident is not None and incident.in_emergency(at)
    measures = policy.emergency_period
    cap = measures.advance_cap_fen if emergency else policy.advance_cap_fen
    paperwork_period = (
        timedelta(days=measures.paperwork_deadline_d) if emergency else policy.paperwork_deadline
    )
    rule = "R5+R2" if emergency else "R5+P3"
    if record.vagrant:
        # R7: interim relief where the vagrant is found - food, lodging, a ticket home.
        cap, rule = min(cap, policy.vagrant_interim_cap_fen), "R5+R7"
    amount = min(record.requested_fen, cap)
    due_at = at + policy.relief_deadline
    figures: dict[str, int | str] = {
        "requested_fen": record.requested_fen,
        "advance_cap_fen": cap,
        "amount_fen": amount,
        "reserve_available_fen": reserve.available_fen,
        "received_at": at.isoformat(),
    }
    if emergency:
        figures["emergency_period"] = str(record.incident_id)
    relief = Deadline.starting(
        DeadlineKind.RELIEF_24H.value, at, policy.relief_deadline, policy.relief_warning_lead
    )
    paperwork = Deadline.starting(
        DeadlineKind.PAPERWORK_5D.value, at, paperwork_period, policy.paperwork_warning_lead
    )
    # R4: the town's own reserve holds it when it covers it whole; otherwise (docs/design.md rule
    # 2) the county fund pays at once, so the 24-hour promise still holds, and finance is
    # alerted.
    on_reserve = reserve.covers(amount)
    funded_by = FundedBy.TOWN_RESERVE if on_reserve else FundedBy.COUNTY_FUND
    out: list[BaseModel] = [
        AdvanceGranted(
            **envelope(record, "advance"),
            rule=rule if on_reserve else "R5+R4",
            figures=figures,
            amount_fen=amount,
            due_at=due_at,
            funded_by=funded_by,
            paperwork_due_at=paperwork.due_at,
            case_status=CaseStatus.ADVANCED if on_reserve else CaseStatus.ESCALATED,
            opened=facts(record),
        )
    ]
    if not on_reserve:
        out.append(
            EscalatedToCountyFund(
                **envelope(record, "escalated"),
                rule="R4+R5",
                figures=figures,
                amount_fen=amount,
                due_at=due_at,
                available_fen=reserve.available_fen,
                case_status=CaseStatus.ESCALATED,
            )
        )
    memo = (
        "R5: advance held on the town reserve"
        if on_reserve
        else "R4: advance escalated to the county fund"
    )
    out.append(hold(book, record, amount, funded_by, memo))
    case = case.model_copy(
        update={
            "status": CaseStatus.ADVANCED if on_reserve else CaseStatus.ESCALATED,
            "granted_fen": amount,
            "funded_by": funded_by.value,
            "relief_deadline": relief,
            "paperwork_deadline": paperwork,
        }
    )
    book.put_case(case)
    schedule_case(book, case)
    if record.vagrant and record.origin_county is not None:
        # R7: placed by the county of origin - referred once the interim relief is given;
        # the case stays open here until its advance is paid and its paperwork done.
        out.append(
            ReferredToOriginCounty(
                **envelope(record, "referred"),
                rule="R7",
                figures={"origin_county": record.origin_county, "interim_fen": amount},
                origin_county=record.origin_county,
                case_status=case.status,
            )
        )
    return out + reserve_low(book, record, rules)


def reserve_low(book: Book, cause: Record, rules: Rules) -> list[BaseModel]:
    """R4 + P11: finance is alerted once when the available reserve falls below the
    threshold, and the alert clears when it is back above."""
    state = book.s
    threshold = rules.policy.reserve_low_threshold_fen(state.reserve.size_fen)
    low = state.reserve.is_low(threshold)
    if low and not state.low_alerted and threshold > 0:
        book.update(low_alerted=True)
        return [
            ReserveLow(
                **envelope(cause, "reserve_low"),
                rule="R4+P11",
                figures={
                    "available_fen": state.reserve.available_fen,
                    "threshold_fen": threshold,
                    "size_fen": state.reserve.size_fen,
                },
                available_fen=state.reserve.available_fen,
                threshold_fen=threshold,
            )
        ]
    if not low and state.low_alerted:
        book.update(low_alerted=False)
    return []


def payment(book: Book, record: PaymentConfirmed, rules: Rules) -> list[BaseModel]:
    """The town paid the household: the hold becomes a payment; the 24-hour deadline is
    met when the payment's broker stamp is before it (R5)."""
    case = open_case(book, record.case_id)
    if case.status not in _HELD:
        raise Refuse(f"case is {case.status.value}: nothing is held to pay")
    if record.amount_fen > case.granted_fen:
        raise Refuse(
            f"payment of {record.amount_fen} fen is above the {case.granted_fen} fen granted"
        )
    town, state = book.town, book.s
    paid, unpaid = record.amount_fen, case.granted_fen - record.amount_fen
    lines: list[Any] = []
    if case.funded_by == FundedBy.TOWN_RESERVE.value:
        lines += transfer(paid_account(town), held_account(town), paid)
        if unpaid:
            lines += transfer(reserve_account(town), held_account(town), unpaid)
        book.update(reserve=state.reserve.pay(case.granted_fen, paid))
        kind = PostingKind.PAYMENT_CONFIRMED
    else:
        county_held = county_account(AccountKind.COUNTY_HELD)
        lines += transfer(paid_account(town), county_held, paid)
        if unpaid:
            lines += transfer(county_account(AccountKind.COUNTY_FUND), county_held, unpaid)
        book.update(
            county_held_fen=state.county_held_fen - case.granted_fen,
            county_paid_fen=state.county_paid_fen + paid,
        )
        kind = PostingKind.ESCALATED_PAID
    out: list[BaseModel] = [
        ReliefPaid(
            **envelope(record, "paid"),
            rule="R5" if case.relief_deadline is not None else "P2",
            figures={"granted_fen": case.granted_fen, "paid_fen": paid, "released_fen": unpaid},
            amount_fen=paid,
            released_fen=unpaid,
            funded_by=FundedBy(case.funded_by),
            case_status=CaseStatus.PAID,
            decided_by=record.actor,
        ),
        posting(record, kind, lines, "relief paid to the household"),
    ]
    updates: dict[str, Any] = {"status": CaseStatus.PAID, "paid_fen": paid}
    if case.relief_deadline is not None:
        outcome = case.relief_deadline.on_done(at_of(record))
        if outcome is not None:
            out.append(
                deadline_decision(case, case.relief_deadline, outcome, record, CaseStatus.PAID)
            )
            updates["relief_deadline"] = case.relief_deadline.model_copy(update={"state": outcome})
    store_case(book, case.model_copy(update=updates), at_of(record))
    return out + reserve_low(book, record, rules)


def cancel(book: Book, record: AdvanceCancelled, rules: Rules) -> list[BaseModel]:
    case = open_case(book, record.case_id)
    if case.status not in _HELD:
        raise Refuse(f"case is {case.status.value}: no unpaid advance to cancel")
    town, state = book.town, book.s
    amount = case.granted_fen
    if case.funded_by == FundedBy.TOWN_RESERVE.value:
        lines = transfer(reserve_account(town), held_account(town), amount)
        book.update(reserve=state.reserve.release(amount))
    else:
        lines = transfer(
            county_account(AccountKind.COUNTY_FUND),
            county_account(AccountKind.COUNTY_HELD),
            amount,
        )
        book.update(county_held_fen=state.county_held_fen - amount)
    voided = AdvanceVoided(
        **envelope(record, "voided"),
        rule="R5",
        figures={"amount_fen": amount, "funded_by": case.funded_by},
        amount_fen=amount,
        reasons=record.reason,
        case_status=CaseStatus.CANCELLED,
        decided_by=record.actor,
    )
    void = [
        d.model_copy(update={"state": DeadlineState.VOID}) if d is not None else None
        for d in (case.relief_deadline, case.paperwork_deadline)
    ]
    case = case.model_copy(
        update={
            "status": CaseStatus.CANCELLED,
            "relief_deadline": void[0],
            "paperwork_deadline": void[1],
        }
    )
    # P6: a cancelled grant no longer blocks the household's next request.
    released = release_grant(book, case, at_of(record), CaseStatus.CANCELLED)
    store_case(book, case, at_of(record))
    return [
        *released,
        voided,
        posting(record, PostingKind.ADVANCE_VOIDED, lines, "advance cancelled before payment"),
        *reserve_low(book, record, rules),
    ]


def mark_grant(book: Book, case: Case, at: datetime) -> None:
    """P6: this household has relief for this cause; a second request is refused."""
    duplicates.mark(book, case, at)


def release_grant(book: Book, case: Case, at: datetime, status: CaseStatus) -> list[BaseModel]:
    """P6: a grant that did not happen (cancelled, rejected) blocks nothing - in the town,
    and in the county's claims stage (the release to send it, if it marked the case)."""
    duplicates.release(book, case)
    return claim_released(case, at, status)


def paperwork(book: Book, record: PaperworkCompleted) -> list[BaseModel]:
    """P1: the paperwork of an advance, due within 5 days."""
    case = open_case(book, record.case_id)
    deadline = case.paperwork_deadline
    if deadline is None:
        raise Refuse("the case has no paperwork deadline (only urgent advances do, P1)")
    outcome = deadline.on_done(at_of(record))
    if outcome is None:
        raise Refuse(f"paperwork deadline already {deadline.state.value}")
    decision = deadline_decision(case, deadline, outcome, record)
    case = case.model_copy(
        update={"paperwork_deadline": deadline.model_copy(update={"state": outcome})}
    )
    store_case(book, case, at_of(record))
    return [decision]


def replenish(
    book: Book, record: ReserveFunded | ReserveReplenished, rules: Rules
) -> list[BaseModel]:
    """P11: finance tops a reserve back up towards its size, never above it (R4)."""
    reserve = book.s.reserve
    shortfall = reserve.shortfall_fen
    figures: dict[str, int | str] = {
        "amount_fen": record.amount_fen,
        "shortfall_fen": shortfall,
        "size_fen": reserve.size_fen,
    }
    if record.amount_fen > shortfall:
        return [
            ReplenishmentRefused(
                **envelope(record, "replenishment_refused"),
                rule="R4+P11",
                figures=figures,
                amount_fen=record.amount_fen,
                shortfall_fen=shortfall,
            )
        ]
    out: list[BaseModel] = [
        posting(
            record,
            PostingKind.RESERVE_REPLENISHED,
            transfer(
                reserve_account(book.town),
                county_account(AccountKind.COUNTY_FUND),
                record.amount_fen,
            ),
            "P11: reserve replenished by county finance",
        )
    ]
    book.update(reserve=reserve.replenish(record.amount_fen))
    return out + reserve_low(book, record, rules)
