"""Expenditure-type relief and its approval: the R3 bands, deliberation above them (R6),
and who approves (P2); refusals in writing, with reasons (P9)."""

from __future__ import annotations

from pydantic import BaseModel

from schemas.decisions import (
    ApprovalRequired,
    ApproverLevel,
    DeliberationRequired,
    FundedBy,
    ReliefApproved,
    ReliefRejected,
)
from schemas.envelope import Record
from schemas.intake import DeliberationDecided, ReliefCategory, ReliefRequested
from services.emergency.domain.advance import mark_grant, release_grant, reserve_low
from services.emergency.domain.book import Book
from services.emergency.domain.bookkeeping import hold
from services.emergency.domain.caps import CapOutcome, judge_expenditure
from services.emergency.domain.common import (
    Refuse,
    Rules,
    at_of,
    case_date,
    envelope,
    facts,
    open_case,
    store_case,
)
from services.emergency.domain.state import Case, CaseStatus


def request_expenditure(
    book: Book, record: ReliefRequested, rules: Rules, case: Case
) -> list[BaseModel]:
    """R3: expenditure-type relief within the bands; R6 above them; P2 who approves."""
    policy = rules.policy
    at = at_of(record)
    figures: dict[str, int | str] = {"requested_fen": record.requested_fen}
    amount = record.requested_fen
    rule = "P2"
    if record.category in (ReliefCategory.SERIOUS_ILLNESS, ReliefCategory.EDUCATION):
        band = policy.band_for(record.category)
        minimum = policy.urban_minimum_on(case_date(at))
        judged = judge_expenditure(record.requested_fen, minimum, band.min, band.max)
        figures.update(
            urban_minimum_fen=minimum,
            min_multiple=band.min,
            max_multiple=band.max,
            floor_fen=judged.floor_fen,
            cap_fen=judged.cap_fen,
            case_date=case_date(at).isoformat(),
        )
        if judged.outcome is CapOutcome.ABOVE_CAP:
            book.put_case(case.model_copy(update={"status": CaseStatus.DELIBERATION}))
            return [
                DeliberationRequired(
                    **envelope(record, "deliberation"),
                    rule="R3+R6",
                    figures=figures,
                    requested_fen=record.requested_fen,
                    cap_fen=judged.cap_fen,
                    case_status=CaseStatus.DELIBERATION,
                    opened=facts(record),
                )
            ]
        amount = judged.amount_fen  # below the floor -> the floor (R3)
        rule = "R3+P2"
    figures["amount_fen"] = amount
    figures["town_approval_limit_fen"] = policy.town_approval_limit_fen
    if amount < policy.town_approval_limit_fen:
        # P2: within the town's authority; paid from its reserve when it covers it.
        return approve(book, record, rules, case, amount, ApproverLevel.TOWN, rule, figures)
    book.put_case(
        case.model_copy(update={"status": CaseStatus.AWAITING_APPROVAL, "granted_fen": amount})
    )
    return [
        ApprovalRequired(
            **envelope(record, "approval_required"),
            rule=rule,
            figures=figures,
            amount_fen=amount,
            approver_level=ApproverLevel.COUNTY,
            case_status=CaseStatus.AWAITING_APPROVAL,
            opened=facts(record),
        )
    ]


def approve(
    book: Book,
    cause: Record,
    rules: Rules,
    case: Case,
    amount: int,
    level: ApproverLevel,
    rule: str,
    figures: dict[str, int | str],
) -> list[BaseModel]:
    """Approved relief is held until the town confirms payment: from the town's reserve
    when it is the town's approval and the reserve covers it, else from the county fund.
    The grant then blocks a second one for the same cause (P6)."""
    out: list[BaseModel] = [
        ReliefApproved(
            **envelope(cause, "approved"),
            rule=rule,
            figures=figures,
            amount_fen=amount,
            approver_level=level,
            case_status=CaseStatus.APPROVED,
            opened=facts(cause) if isinstance(cause, ReliefRequested) else None,
        )
    ]
    on_reserve = level is ApproverLevel.TOWN and book.s.reserve.covers(amount)
    funded_by = FundedBy.TOWN_RESERVE if on_reserve else FundedBy.COUNTY_FUND
    memo = (
        "P2: relief approved by the town, held on its reserve"
        if on_reserve
        else "relief approved, held on the county fund"
    )
    out.append(hold(book, cause, amount, funded_by, memo))
    case = case.model_copy(
        update={"status": CaseStatus.APPROVED, "granted_fen": amount, "funded_by": funded_by.value}
    )
    book.put_case(case)
    mark_grant(book, case, case.received_at)
    return out + reserve_low(book, cause, rules)


def reject(book: Book, case: Case, record: Record, reasons: str) -> list[BaseModel]:
    """P9: a refusal in writing, with reasons; the case leaves the hot state."""
    decision = ReliefRejected(
        **envelope(record, "rejected"),
        rule="P9",
        figures={"requested_fen": case.requested_fen},
        reasons=reasons,
        case_status=CaseStatus.REJECTED,
    )
    release_grant(book, case)
    store_case(book, case.model_copy(update={"status": CaseStatus.REJECTED}), at_of(record))
    return [decision]


def deliberation(book: Book, record: DeliberationDecided, rules: Rules) -> list[BaseModel]:
    """R6: county civil affairs decides a case above the cap, with reasons."""
    case = open_case(book, record.case_id)
    if case.status is not CaseStatus.DELIBERATION:
        raise Refuse(f"case is {case.status.value}: no deliberation is pending")
    if record.refused or record.approved_fen is None:
        return reject(book, case, record, record.reasons)
    figures: dict[str, int | str] = {
        "approved_fen": record.approved_fen,
        "requested_fen": case.requested_fen,
    }
    return approve(
        book, record, rules, case, record.approved_fen, ApproverLevel.COUNTY, "R6", figures
    )
