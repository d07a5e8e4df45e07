"""Transitional living relief (P5): a daily amount per person, paid monthly from the
county fund for 3 months, extendable to 6; the first instalment falls due at once, the
next ones when ticks reach them (each due time is on the wheel).

An instalment that falls due is held on the county fund (`InstalmentDue`); it is paid
when the town confirms the payment to the household (`PaymentConfirmed`, section 八: the
town pays), never booked as paid by the processor alone. The extension is county civil
affairs' decision, within P5's months (beyond them ordinary relief takes over: a new
case); a schedule found ineligible or fraudulent is stopped by a review (review.py, P8).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from schemas.decisions import (
    ApprovalRequired,
    ApproverLevel,
    FundedBy,
    InstalmentDue,
    ReliefApproved,
    TransitionalInstalmentPaid,
)
from schemas.envelope import Record, Role, derived_id
from schemas.intake import PaymentConfirmed, ReliefRequested, TransitionalReliefExtended
from schemas.postings import AccountKind, Posting, PostingKind, transfer
from services.emergency.domain.book import Book
from services.emergency.domain.bookkeeping import county_account, paid_account, posting
from services.emergency.domain.common import (
    DAYS_PER_MONTH,
    PROCESSOR,
    Refuse,
    Rules,
    at_of,
    envelope,
    facts,
    open_case,
    schedule_case,
    store_case,
)
from services.emergency.domain.state import Case, CaseStatus


def request_transitional(
    book: Book, record: ReliefRequested, rules: Rules, case: Case
) -> list[BaseModel]:
    policy = rules.policy
    at = at_of(record)
    instalment = policy.transitional_daily_fen_per_person * record.persons * DAYS_PER_MONTH
    months = policy.transitional_period_months
    figures: dict[str, int | str] = {
        "daily_fen_per_person": policy.transitional_daily_fen_per_person,
        "persons": record.persons,
        "days_per_month": DAYS_PER_MONTH,
        "instalment_fen": instalment,
        "months": months,
    }
    total = instalment * months
    case = case.model_copy(
        update={
            "granted_fen": total,
            "funded_by": FundedBy.COUNTY_FUND.value,
            "instalment_fen": instalment,
            "instalments_total": months,
        }
    )
    figures["amount_fen"] = total
    figures["town_approval_limit_fen"] = policy.town_approval_limit_fen
    by_town = record.actor.role is Role.TOWN
    if by_town and total >= policy.town_approval_limit_fen:
        # P2: above the town's authority, county civil affairs approves the schedule
        book.put_case(case.model_copy(update={"status": CaseStatus.AWAITING_APPROVAL}))
        return [
            ApprovalRequired(
                **envelope(record, "approval_required"),
                rule="P5+P2",
                figures=figures,
                amount_fen=total,
                approver_level=ApproverLevel.COUNTY,
                case_status=CaseStatus.AWAITING_APPROVAL,
                opened=facts(record),
            )
        ]
    level = ApproverLevel.TOWN if by_town else ApproverLevel.COUNTY
    return start(book, record, case, figures, level, at)


def start(
    book: Book,
    cause: Record,
    case: Case,
    figures: dict[str, int | str],
    level: ApproverLevel,
    at: datetime,
) -> list[BaseModel]:
    """The schedule approved (by the person whose command `cause` is): the first
    instalment falls due at once."""
    approved = ReliefApproved(
        **envelope(cause, "approved"),
        rule="P5",
        figures=figures,
        amount_fen=case.granted_fen,
        approver_level=level,
        case_status=CaseStatus.TRANSITIONAL,
        opened=facts(cause) if isinstance(cause, ReliefRequested) else None,
        decided_by=cause.actor,
    )
    case = case.model_copy(
        update={"status": CaseStatus.TRANSITIONAL, "instalments_due": 0, "next_instalment_at": at}
    )
    return [approved, *pay_instalments(book, case, cause, at)]


def pay_instalments(book: Book, case: Case, cause: Record, now: datetime) -> list[BaseModel]:
    """Every instalment that fell due by `now` is held on the county fund for the town
    to pay; then the case is stored and its next due time (or the end of its grace for
    an extension) put on the wheel."""
    out: list[BaseModel] = []
    held_now = 0
    while (
        case.next_instalment_at is not None
        and case.next_instalment_at <= now
        and case.instalments_due < case.instalments_total
    ):
        n = case.instalments_due + 1
        due = case.next_instalment_at
        env = cause.envelope_for("instalment_due")
        env.update(
            event_id=derived_id(case.request_id, "instalment_due", str(n)),
            actor=PROCESSOR,
            correlation_id=case.case_id,
            town=case.town,
        )
        out.append(
            InstalmentDue(
                **env,
                rule="P5",
                figures={
                    "instalment_no": n,
                    "of": case.instalments_total,
                    "amount_fen": case.instalment_fen,
                },
                instalment_no=n,
                amount_fen=case.instalment_fen,
                due_at=due,
                case_status=CaseStatus.TRANSITIONAL,
            )
        )
        pid = derived_id(case.request_id, "posting:instalment_held", str(n))
        out.append(
            Posting(
                **{**env, "event_id": pid},
                posting_id=pid,
                kind=PostingKind.ESCALATED_ADVANCE.value,
                memo=f"P5: transitional living relief, instalment {n} held for the town to pay",
                lines=transfer(
                    county_account(AccountKind.COUNTY_HELD),
                    county_account(AccountKind.COUNTY_FUND),
                    case.instalment_fen,
                ),
            )
        )
        held_now += case.instalment_fen
        more = n < case.instalments_total
        case = case.model_copy(
            update={
                "instalments_due": n,
                "next_instalment_at": due + timedelta(days=DAYS_PER_MONTH) if more else None,
                "schedule_ended_at": None if more else due,
            }
        )
    if held_now:
        book.update(county_held_fen=book.s.county_held_fen + held_now)
    schedule_case(book, case)
    store_case(book, case, now)
    return out


def pay_instalment(book: Book, record: PaymentConfirmed, case: Case) -> list[BaseModel]:
    """The town paid the oldest instalment due (section 八: the town pays; P9: to the
    household's account): held money becomes paid, the unpaid rest goes back."""
    if case.instalments_paid >= case.instalments_due:
        raise Refuse("no transitional instalment is due and unpaid: nothing is held to pay")
    if record.amount_fen > case.instalment_fen:
        raise Refuse(
            f"payment of {record.amount_fen} fen is above the {case.instalment_fen} fen "
            "instalment due"
        )
    n = case.instalments_paid + 1
    paid, unpaid = record.amount_fen, case.instalment_fen - record.amount_fen
    held = county_account(AccountKind.COUNTY_HELD)
    lines = list(transfer(paid_account(case.town), held, paid))
    if unpaid:
        lines += transfer(county_account(AccountKind.COUNTY_FUND), held, unpaid)
    state = book.s
    book.update(
        county_held_fen=state.county_held_fen - case.instalment_fen,
        county_paid_fen=state.county_paid_fen + paid,
    )
    out: list[BaseModel] = [
        TransitionalInstalmentPaid(
            **envelope(record, "instalment_paid"),
            rule="P5",
            figures={"instalment_no": n, "amount_fen": paid, "released_fen": unpaid},
            instalment_no=n,
            amount_fen=paid,
            case_status=CaseStatus.TRANSITIONAL,
            decided_by=record.actor,
        ),
        posting(
            record,
            PostingKind.ESCALATED_PAID,
            lines,
            f"P5: transitional living relief, instalment {n} paid by the town",
        ),
    ]
    case = case.model_copy(update={"instalments_paid": n, "paid_fen": case.paid_fen + paid})
    store_case(book, case, at_of(record))
    return out


def extend(book: Book, record: TransitionalReliefExtended, rules: Rules) -> list[BaseModel]:
    case = open_case(book, record.case_id)
    if case.status is not CaseStatus.TRANSITIONAL:
        raise Refuse("only transitional living relief can be extended (P5)")
    months = record.extended_to_months
    if months > rules.policy.transitional_max_months or months <= case.instalments_total:
        raise Refuse(
            f"extension to {months} months must be above the current {case.instalments_total} "
            f"and at most {rules.policy.transitional_max_months} (P5)"
        )
    next_at = case.next_instalment_at
    if next_at is None:  # the schedule had ended: it resumes a month after the last one
        next_at = case.received_at + timedelta(days=DAYS_PER_MONTH * case.instalments_due)
    case = case.model_copy(
        update={
            "instalments_total": months,
            "next_instalment_at": next_at,
            "schedule_ended_at": None,
            "granted_fen": case.instalment_fen * months,
        }
    )
    approved = ReliefApproved(
        **envelope(record, "approved"),
        rule="P5",
        figures={"months": months, "instalment_fen": case.instalment_fen},
        amount_fen=case.instalment_fen * months,
        approver_level=ApproverLevel.COUNTY,
        case_status=CaseStatus.TRANSITIONAL,
        decided_by=record.actor,
        reasons=record.reason,
    )
    return [approved, *pay_instalments(book, case, record, at_of(record))]
