"""Review after the fact (docs/design.md rule 4): civil affairs confirms each paid advance, tops it
up from the county fund, or finds it ineligible (recovery, P8); it approves expenditure
relief above a town's authority (P2). Settlement replenishes the town reserve (P11)."""

from __future__ import annotations

from pydantic import BaseModel

from schemas.decisions import ApproverLevel, FundedBy, RecoveryClaimed, ReliefApproved
from schemas.envelope import Record
from schemas.intake import CaseReviewed, ReviewOutcome
from schemas.postings import AccountKind, PostingKind, account, transfer
from services.emergency.domain.advance import reserve_low
from services.emergency.domain.approval import approve, reject
from services.emergency.domain.book import Book
from services.emergency.domain.bookkeeping import (
    county_account,
    paid_account,
    posting,
    reserve_account,
)
from services.emergency.domain.common import Refuse, Rules, at_of, envelope, open_case, store_case
from services.emergency.domain.state import Case, CaseStatus


def review(book: Book, record: CaseReviewed, rules: Rules) -> list[BaseModel]:
    case = open_case(book, record.case_id)
    if case.status is CaseStatus.AWAITING_APPROVAL:
        if record.outcome in (ReviewOutcome.INELIGIBLE, ReviewOutcome.FRAUD):
            return reject(book, case, record, record.reasons or "found ineligible on review")
        if record.outcome is not ReviewOutcome.CONFIRMED:
            raise Refuse("an application awaiting approval is confirmed or found ineligible")
        figures: dict[str, int | str] = {
            "approved_fen": record.approved_fen,
            "requested_fen": case.requested_fen,
        }
        return approve(
            book, record, rules, case, record.approved_fen, ApproverLevel.COUNTY, "P2", figures
        )
    if case.status is not CaseStatus.PAID:
        raise Refuse(f"case is {case.status.value}: only a paid advance is reviewed")

    town = book.town
    out: list[BaseModel] = []
    figures = {
        "paid_fen": case.paid_fen,
        "approved_fen": record.approved_fen,
        "outcome": record.outcome.value,
    }
    if record.outcome is ReviewOutcome.CONFIRMED:
        out.append(
            ReliefApproved(
                **envelope(record, "approved"),
                rule="R5",
                figures=figures,
                amount_fen=case.paid_fen,
                approver_level=ApproverLevel.COUNTY,
                case_status=CaseStatus.REVIEWED,
            )
        )
    elif record.outcome is ReviewOutcome.TOP_UP:
        top_up = record.top_up_fen or 0
        out.append(
            ReliefApproved(
                **envelope(record, "approved"),
                rule="R5+R3",
                figures={**figures, "top_up_fen": top_up},
                amount_fen=case.paid_fen + top_up,
                approver_level=ApproverLevel.COUNTY,
                case_status=CaseStatus.REVIEWED,
            )
        )
        out.append(
            posting(
                record,
                PostingKind.TOP_UP,
                transfer(paid_account(town), county_account(AccountKind.COUNTY_FUND), top_up),
                "review: topped up from the county fund",
            )
        )
        book.update(county_paid_fen=book.s.county_paid_fen + top_up)
    else:
        # P8: ineligible -> recover the amount; fraud -> recover it plus a fine of 1-3 x.
        multiple = record.fine_multiple or 0
        fine = case.paid_fen * multiple
        out.append(
            RecoveryClaimed(
                **envelope(record, "recovery"),
                rule="P8",
                figures={**figures, "fine_multiple": multiple, "fine_fen": fine},
                amount_fen=case.paid_fen,
                fine_fen=fine,
                case_status=CaseStatus.REVIEWED,
            )
        )
        out.append(
            posting(
                record,
                PostingKind.RECOVERY_CLAIMED,
                transfer(
                    account(AccountKind.RECOVERY_RECEIVABLE, town),
                    account(AccountKind.RECOVERED, town),
                    case.paid_fen + fine,
                ),
                "P8: recovery claimed",
            )
        )
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
