"""Review after the fact (docs/design.md rule 4): civil affairs confirms each paid advance, tops it
up from the county fund, or finds it ineligible (recovery, P8); it approves expenditure
relief above a town's authority (P2); it stops a transitional schedule found ineligible
or fraudulent (P8). Settlement replenishes the town reserve (P11).

R3 holds here too: a county approval or a top-up that would take a case above its cap
(or its category's configured ceiling) is not applied but goes to deliberation (R6).
P8: a fine for fraud is decided by the reviewer (可以: it may be none), within the
configured band of multiples of the amount obtained.
"""

from __future__ import annotations

from pydantic import BaseModel

from schemas.decisions import (
    ApproverLevel,
    RecoveryClaimed,
    ReliefApproved,
    ReliefRejected,
)
from schemas.intake import CaseReviewed, ReliefCategory, ReviewOutcome
from schemas.postings import AccountKind, PostingKind, account, transfer
from services.emergency.domain import transitional
from services.emergency.domain.advance import release_grant, reserve_low
from services.emergency.domain.approval import (
    approve,
    ceiling,
    deliberation_required,
    reject,
    settle,
)
from services.emergency.domain.book import Book
from services.emergency.domain.bookkeeping import (
    county_account,
    paid_account,
    posting,
)
from services.emergency.domain.common import Refuse, Rules, at_of, envelope, open_case, store_case
from services.emergency.domain.state import Case, CaseStatus

__all__ = ["review", "settle"]


def review(book: Book, record: CaseReviewed, rules: Rules) -> list[BaseModel]:
    case = open_case(book, record.case_id)
    if case.status is CaseStatus.AWAITING_APPROVAL:
        return _county_approval(book, record, rules, case)
    if case.status is CaseStatus.TRANSITIONAL:
        return _stop_schedule(book, record, rules, case)
    if case.status is not CaseStatus.PAID:
        raise Refuse(f"case is {case.status.value}: only a paid advance is reviewed")

    town = book.town
    out: list[BaseModel] = []
    figures: dict[str, int | str] = {
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
                decided_by=record.actor,
                reasons=record.reasons,
            )
        )
    elif record.outcome is ReviewOutcome.TOP_UP:
        top_up = record.top_up_fen or 0
        total = case.paid_fen + top_up
        _, cap = ceiling(rules, case)
        if total > cap:
            # R3 + R6: a top-up never takes a case above its cap without deliberation
            return deliberation_required(
                book, record, case, total, cap, {**figures, "top_up_fen": top_up}
            )
        out.append(
            ReliefApproved(
                **envelope(record, "approved"),
                rule="R5+R3",
                figures={**figures, "top_up_fen": top_up, "cap_fen": cap},
                amount_fen=total,
                approver_level=ApproverLevel.COUNTY,
                case_status=CaseStatus.REVIEWED,
                decided_by=record.actor,
                reasons=record.reasons,
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
        out.extend(_recovery(book, record, rules, case, figures))
    out.extend(settle(book, record, case))
    store_case(book, case.model_copy(update={"status": CaseStatus.REVIEWED}), at_of(record))
    return out + reserve_low(book, record, rules)


def _county_approval(book: Book, record: CaseReviewed, rules: Rules, case: Case) -> list[BaseModel]:
    """P2: county civil affairs approves above a town's authority - within the R3 band,
    or the case goes to deliberation (R6)."""
    if record.outcome in (ReviewOutcome.INELIGIBLE, ReviewOutcome.FRAUD):
        return reject(book, case, record, record.reasons or "found ineligible on review")
    if record.outcome is not ReviewOutcome.CONFIRMED:
        raise Refuse("an application awaiting approval is confirmed or found ineligible")
    if case.category == ReliefCategory.TRANSITIONAL_LIVING.value:
        # P5 + P2: the county approves the schedule as the rules computed it
        if record.approved_fen != case.granted_fen:
            raise Refuse(
                f"a transitional schedule is approved whole: {case.granted_fen} fen "
                f"({case.instalments_total} instalments of {case.instalment_fen}), "
                f"not {record.approved_fen}"
            )
        figures0: dict[str, int | str] = {
            "instalment_fen": case.instalment_fen,
            "months": case.instalments_total,
            "amount_fen": case.granted_fen,
        }
        return transitional.start(book, record, case, figures0, ApproverLevel.COUNTY, at_of(record))
    floor, cap = ceiling(rules, case)
    figures: dict[str, int | str] = {
        "approved_fen": record.approved_fen,
        "requested_fen": case.requested_fen,
        "floor_fen": floor,
        "cap_fen": cap,
    }
    if record.approved_fen > cap:
        return deliberation_required(book, record, case, record.approved_fen, cap, figures)
    if record.approved_fen < floor:
        raise Refuse(
            f"approval of {record.approved_fen} fen is below the R3 floor of {floor} fen "
            f"for {case.category}: approve at least the floor, or find the case ineligible"
        )
    return approve(
        book,
        record,
        rules,
        case,
        record.approved_fen,
        ApproverLevel.COUNTY,
        "R3+P2",
        figures,
        record.reasons,
    )


def _fine(record: CaseReviewed, rules: Rules, amount: int) -> tuple[int, dict[str, int | str]]:
    """P8: the fine the reviewer decided (none, an amount, or a whole multiple), within
    the configured band of multiples of `amount`."""
    least, most = rules.policy.fine_band_fen(amount)
    band = rules.policy.fraud_fine_multiples
    figures: dict[str, int | str] = {
        "fine_min_multiple": band.min,
        "fine_max_multiple": band.max,
    }
    if record.fine_multiple is not None:
        if not band.min <= record.fine_multiple <= band.max:
            raise Refuse(
                f"a fine of {record.fine_multiple} x is outside the configured "
                f"{band.min}-{band.max} x (P8)"
            )
        fine = record.fine_multiple * amount
        figures["fine_multiple"] = record.fine_multiple
    elif record.fine_fen is not None:
        fine = record.fine_fen
        if not least <= fine <= most:
            raise Refuse(
                f"a fine of {fine} fen is outside {least}-{most} fen "
                f"({band.min}-{band.max} x the {amount} fen obtained, P8)"
            )
    else:
        fine = 0  # P8: the fine is "may" (可以): the reviewer decided none
    figures["fine_fen"] = fine
    return fine, figures


def _recovery(
    book: Book, record: CaseReviewed, rules: Rules, case: Case, figures: dict[str, int | str]
) -> list[BaseModel]:
    """P8: ineligible -> recover the amount; fraud -> recover it, and a fine if decided."""
    fine, fine_figures = _fine(record, rules, case.paid_fen)
    town = book.town
    return [
        RecoveryClaimed(
            **envelope(record, "recovery"),
            rule="P8",
            figures={**figures, **fine_figures},
            amount_fen=case.paid_fen,
            fine_fen=fine,
            case_status=CaseStatus.REVIEWED,
            decided_by=record.actor,
        ),
        posting(
            record,
            PostingKind.RECOVERY_CLAIMED,
            transfer(
                account(AccountKind.RECOVERY_RECEIVABLE, town),
                account(AccountKind.RECOVERED, town),
                case.paid_fen + fine,
            ),
            "P8: recovery claimed",
        ),
    ]


def _stop_schedule(book: Book, record: CaseReviewed, rules: Rules, case: Case) -> list[BaseModel]:
    """P8, P5: a transitional schedule found ineligible or fraudulent stops: what is held
    for instalments due and unpaid goes back to the county fund, what was paid is
    recovered (with a fine for fraud, if decided)."""
    if record.outcome not in (ReviewOutcome.INELIGIBLE, ReviewOutcome.FRAUD):
        raise Refuse(
            "a running transitional schedule is reviewed to stop it (ineligible or fraud); "
            "while it is right, it runs (P5)"
        )
    out: list[BaseModel] = []
    held = (case.instalments_due - case.instalments_paid) * case.instalment_fen
    if held:
        out.append(
            posting(
                record,
                PostingKind.ADVANCE_VOIDED,
                transfer(
                    county_account(AccountKind.COUNTY_FUND),
                    county_account(AccountKind.COUNTY_HELD),
                    held,
                ),
                "P8: transitional schedule stopped, unpaid instalments released",
            )
        )
        book.update(county_held_fen=book.s.county_held_fen - held)
    stopped = {
        "next_instalment_at": None,
        "instalments_due": case.instalments_paid,
        "schedule_ended_at": None,
    }
    figures: dict[str, int | str] = {
        "paid_fen": case.paid_fen,
        "released_fen": held,
        "instalments_paid": case.instalments_paid,
        "outcome": record.outcome.value,
    }
    if case.paid_fen:
        out[:0] = _recovery(book, record, rules, case, figures)
        status = CaseStatus.REVIEWED
    else:
        out.insert(
            0,
            ReliefRejected(
                **envelope(record, "rejected"),
                rule="P8+P9",
                figures=figures,
                reasons=record.reasons,
                case_status=CaseStatus.REJECTED,
                decided_by=record.actor,
            ),
        )
        out[:0] = release_grant(book, case, at_of(record), CaseStatus.REJECTED)
        status = CaseStatus.REJECTED
    store_case(book, case.model_copy(update={**stopped, "status": status}), at_of(record))
    return out
