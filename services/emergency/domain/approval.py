"""Expenditure-type relief and its approval: the R3 bands, deliberation above them (R6),
and who approves (P2); refusals in writing, with reasons (P9).

R3's caps hold on every path that sets or raises an amount - the town's approval, the
county's approval, a review's top-up (review.py) - through `ceiling`: an amount above the
category's cap (or, for a category with no band in the county's text, the configured
ceiling) is never approved by anyone but a deliberation (R6), with its reasons. Who
approves is the person whose command it is (section 八: towns accept, review and approve
within their authority, P2; county civil affairs above it); the decision records them
(`decided_by`), and the processor never approves in anyone's name.
"""

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
from schemas.envelope import Record, Role
from schemas.intake import DeliberationDecided, ReliefCategory, ReliefRequested
from schemas.postings import AccountKind, PostingKind, transfer
from services.emergency.domain.advance import release_grant, reserve_low
from services.emergency.domain.book import Book
from services.emergency.domain.bookkeeping import (
    county_account,
    hold,
    paid_account,
    posting,
    reserve_account,
)
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


def ceiling(rules: Rules, case: Case) -> tuple[int, int]:
    """R3, R6: (floor, cap) of what the case may be worth without a deliberation, on the
    case's date (P4)."""
    return rules.policy.ceiling_fen(ReliefCategory(case.category), case_date(case.received_at))


def deliberation_required(
    book: Book, cause: Record, case: Case, amount: int, cap: int, figures: dict[str, int | str]
) -> list[BaseModel]:
    """R3 + R6: an amount above the cap goes to county civil affairs' deliberation
    (一事一议), whichever path asked for it; nothing is held until it is decided."""
    book.put_case(case.model_copy(update={"status": CaseStatus.DELIBERATION}))
    return [
        DeliberationRequired(
            **envelope(cause, "deliberation"),
            rule="R3+R6",
            figures={**figures, "asked_fen": amount, "cap_fen": cap},
            requested_fen=amount,
            cap_fen=cap,
            case_status=CaseStatus.DELIBERATION,
            opened=facts(cause) if isinstance(cause, ReliefRequested) else None,
        )
    ]


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
            return deliberation_required(
                book, record, case, record.requested_fen, judged.cap_fen, figures
            )
        amount = judged.amount_fen  # below the floor -> the floor (R3)
        rule = "R3+P2"
    else:
        # R6: a category with no band in the county's text has a configured ceiling
        _, cap = ceiling(rules, case)
        figures["ceiling_fen"] = cap
        if amount > cap:
            return deliberation_required(book, record, case, amount, cap, figures)
    figures["amount_fen"] = amount
    figures["town_approval_limit_fen"] = policy.town_approval_limit_fen
    if amount < policy.town_approval_limit_fen:
        # P2: within a town's authority. Section 八: the town that registers it accepts,
        # reviews and approves it; county civil affairs registering it approves it itself.
        level = ApproverLevel.TOWN if record.actor.role is Role.TOWN else ApproverLevel.COUNTY
        return approve(book, record, rules, case, amount, level, rule, figures)
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
    reasons: str = "",
) -> list[BaseModel]:
    """Approved relief is held until the town confirms payment: from the town's reserve
    when it is the town's approval and the reserve covers it, else from the county fund.
    The approver is the person whose command `cause` is (section 十)."""
    out: list[BaseModel] = [
        ReliefApproved(
            **envelope(cause, "approved"),
            rule=rule,
            figures=figures,
            amount_fen=amount,
            approver_level=level,
            case_status=CaseStatus.APPROVED,
            opened=facts(cause) if isinstance(cause, ReliefRequested) else None,
            decided_by=cause.actor,
            reasons=reasons,
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
    return out + reserve_low(book, cause, rules)


def reject(book: Book, case: Case, record: Record, reasons: str) -> list[BaseModel]:
    """P9: a refusal in writing, with reasons; the case leaves the hot state."""
    decision = ReliefRejected(
        **envelope(record, "rejected"),
        rule="P9",
        figures={"requested_fen": case.requested_fen},
        reasons=reasons,
        case_status=CaseStatus.REJECTED,
        decided_by=record.actor,
    )
    released = release_grant(book, case, at_of(record), CaseStatus.REJECTED)
    store_case(book, case.model_copy(update={"status": CaseStatus.REJECTED}), at_of(record))
    return [*released, decision]


def deliberation(book: Book, record: DeliberationDecided, rules: Rules) -> list[BaseModel]:
    """R6: county civil affairs decides a case above the cap, with reasons. A paid
    advance whose review asked for more (review.py) is decided as its final amount: the
    top-up above what was paid, or the advance alone when the top-up is refused."""
    case = open_case(book, record.case_id)
    if case.status is not CaseStatus.DELIBERATION:
        raise Refuse(f"case is {case.status.value}: no deliberation is pending")
    if case.paid_fen > 0:
        return _deliberated_top_up(book, record, rules, case)
    if record.refused or record.approved_fen is None:
        return reject(book, case, record, record.reasons)
    figures: dict[str, int | str] = {
        "approved_fen": record.approved_fen,
        "requested_fen": case.requested_fen,
    }
    return approve(
        book,
        record,
        rules,
        case,
        record.approved_fen,
        ApproverLevel.COUNTY,
        "R6",
        figures,
        record.reasons,
    )


def _deliberated_top_up(
    book: Book, record: DeliberationDecided, rules: Rules, case: Case
) -> list[BaseModel]:
    total = case.paid_fen if record.refused else (record.approved_fen or 0)
    if total < case.paid_fen:
        raise Refuse(
            f"a deliberation of {total} fen is below the {case.paid_fen} fen already paid: "
            "to take money back, review the case as ineligible (P8)"
        )
    top_up = total - case.paid_fen
    figures: dict[str, int | str] = {"paid_fen": case.paid_fen, "approved_fen": total}
    if record.refused:
        figures["top_up_refused"] = 1
    out: list[BaseModel] = [
        ReliefApproved(
            **envelope(record, "approved"),
            rule="R6",
            figures={**figures, "top_up_fen": top_up},
            amount_fen=total,
            approver_level=ApproverLevel.COUNTY,
            case_status=CaseStatus.REVIEWED,
            decided_by=record.actor,
            reasons=record.reasons,
        )
    ]
    if top_up:
        out.append(
            posting(
                record,
                PostingKind.TOP_UP,
                transfer(paid_account(book.town), county_account(AccountKind.COUNTY_FUND), top_up),
                "R6: top-up decided by deliberation, from the county fund",
            )
        )
        book.update(county_paid_fen=book.s.county_paid_fen + top_up)
    out.extend(settle(book, record, case))
    store_case(book, case.model_copy(update={"status": CaseStatus.REVIEWED}), at_of(record))
    return out + reserve_low(book, record, rules)


def settle(book: Book, cause: Record, case: Case) -> list[BaseModel]:
    """P11: settlement of a reviewed advance paid from the town's reserve tops the
    reserve back up by that amount (never above its size)."""
    if case.funded_by != FundedBy.TOWN_RESERVE.value:
        return []
    reserve = book.s.reserve
    amount = min(case.paid_fen, reserve.shortfall_fen)
    if amount <= 0:
        return []
    book.update(reserve=reserve.replenish(amount))
    return [
        posting(
            cause,
            PostingKind.RESERVE_REPLENISHED,
            transfer(reserve_account(book.town), county_account(AccountKind.COUNTY_FUND), amount),
            "P11: settlement replenishes the town reserve",
        )
    ]
