"""Transitional living relief (P5): a daily amount per person, paid monthly from the
county fund for 3 months, extendable to 6; the first instalment at once, the next ones
when ticks reach them (each due time is on the wheel)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from schemas.decisions import ApproverLevel, FundedBy, ReliefApproved, TransitionalInstalmentPaid
from schemas.envelope import Record, derived_id
from schemas.intake import ReliefRequested, TransitionalReliefExtended
from schemas.postings import AccountKind, Posting, PostingKind, transfer
from services.emergency.domain.advance import mark_grant
from services.emergency.domain.book import Book
from services.emergency.domain.bookkeeping import county_account, paid_account
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
    approved = ReliefApproved(
        **envelope(record, "approved"),
        rule="P5",
        figures=figures,
        amount_fen=instalment * months,
        approver_level=ApproverLevel.COUNTY,
        case_status=CaseStatus.TRANSITIONAL,
        opened=facts(record),
    )
    case = case.model_copy(
        update={
            "status": CaseStatus.TRANSITIONAL,
            "granted_fen": instalment * months,
            "funded_by": FundedBy.COUNTY_FUND.value,
            "instalment_fen": instalment,
            "instalments_total": months,
            "instalments_paid": 0,
            "next_instalment_at": at,
        }
    )
    mark_grant(book, case, at)
    return [approved, *pay_instalments(book, case, record, at)]


def pay_instalments(book: Book, case: Case, cause: Record, now: datetime) -> list[BaseModel]:
    """Pay every instalment that fell due by `now`, then store the case and put its next
    due time (or the end of its grace for an extension) on the wheel."""
    out: list[BaseModel] = []
    paid_now = 0
    while (
        case.next_instalment_at is not None
        and case.next_instalment_at <= now
        and case.instalments_paid < case.instalments_total
    ):
        n = case.instalments_paid + 1
        env = cause.envelope_for("instalment")
        env.update(
            event_id=derived_id(case.request_id, "instalment", str(n)),
            actor=PROCESSOR,
            correlation_id=case.case_id,
            town=case.town,
        )
        out.append(
            TransitionalInstalmentPaid(
                **env,
                rule="P5",
                figures={
                    "instalment_no": n,
                    "of": case.instalments_total,
                    "amount_fen": case.instalment_fen,
                },
                instalment_no=n,
                amount_fen=case.instalment_fen,
                case_status=CaseStatus.TRANSITIONAL,
            )
        )
        pid = derived_id(case.request_id, "posting:transitional_instalment", str(n))
        out.append(
            Posting(
                **{**env, "event_id": pid},
                posting_id=pid,
                kind=PostingKind.TRANSITIONAL_INSTALMENT.value,
                memo=f"P5: transitional living relief, instalment {n}",
                lines=transfer(
                    paid_account(case.town),
                    county_account(AccountKind.COUNTY_FUND),
                    case.instalment_fen,
                ),
            )
        )
        paid_now += case.instalment_fen
        more = n < case.instalments_total
        due = case.next_instalment_at
        case = case.model_copy(
            update={
                "instalments_paid": n,
                "paid_fen": case.paid_fen + case.instalment_fen,
                "next_instalment_at": due + timedelta(days=DAYS_PER_MONTH) if more else None,
                "schedule_ended_at": None if more else due,
            }
        )
    if paid_now:
        book.update(county_paid_fen=book.s.county_paid_fen + paid_now)
    schedule_case(book, case)
    store_case(book, case, now)
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
        next_at = case.received_at + timedelta(days=DAYS_PER_MONTH * case.instalments_paid)
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
    )
    return [approved, *pay_instalments(book, case, record, at_of(record))]
